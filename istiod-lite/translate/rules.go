package translate

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

// ruleInfo is one route rule, validated. Matches, timeouts and retry do not
// depend on the parent; filters and backends do (ReferenceGrants apply to
// Gateway parents only), so they are compiled per mode on demand.
type ruleInfo struct {
	index    int
	name     string
	matches  []*warrenv1.RouteMatch
	timeouts *warrenv1.Timeouts
	retry    *warrenv1.Retry
	session  *warrenv1.SessionPersistence
	// dropped, when set, says why the rule is invalid and left out.
	dropped string
	// fail500, when set, says why the rule answers 500 (an unsupported
	// filter must not be skipped).
	fail500 string
	compile func(mode) *compiled
	cache   [2]*compiled
}

type compiled struct {
	filters  []*warrenv1.Filter
	backends []*warrenv1.Backend
	refs     problems
}

func (ri *ruleInfo) compiled(m mode) *compiled {
	if ri.cache[m] == nil {
		ri.cache[m] = ri.compile(m)
	}
	return ri.cache[m]
}

// httpRules validates the rules of an HTTPRoute.
func (t *translator) httpRules(r *routeInfo, route *gwv1.HTTPRoute) []*ruleInfo {
	var out []*ruleInfo
	for i := range route.Spec.Rules {
		rule := &route.Spec.Rules[i]
		ri := &ruleInfo{index: i}
		if rule.Name != nil {
			ri.name = string(*rule.Name)
		}
		where := fmt.Sprintf("rule %d", i)
		if ri.name != "" {
			where = fmt.Sprintf("rule %d (%s)", i, ri.name)
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gwv1.HTTPRouteMatch{{}}
		}
		for j, m := range matches {
			rm, err := httpMatch(m)
			if err != nil {
				ri.dropped = fmt.Sprintf("%s match %d: %v", where, j, err)
				break
			}
			ri.matches = append(ri.matches, rm)
		}
		if ri.dropped == "" {
			ri.dropped = checkHTTPFilters(rule, where)
		}
		if ri.dropped == "" && rule.Timeouts != nil {
			ri.timeouts, ri.dropped = httpTimeouts(rule.Timeouts, where)
		}
		if ri.dropped == "" && rule.Retry != nil {
			ri.retry, ri.dropped = httpRetry(rule.Retry, where)
		}
		if ri.dropped == "" && rule.SessionPersistence != nil {
			ri.session, ri.dropped = sessionPersistence(rule.SessionPersistence, where)
		}
		for _, f := range rule.Filters {
			if f.Type == gwv1.HTTPRouteFilterExtensionRef || f.Type == gwv1.HTTPRouteFilterExternalAuth {
				ri.fail500 = fmt.Sprintf("%s: filter %s is not supported; the rule answers 500", where, f.Type)
			}
		}
		ri.compile = func(m mode) *compiled {
			c := &compiled{}
			for _, f := range rule.Filters {
				if wf := t.httpFilter(r, f, m, &c.refs); wf != nil {
					c.filters = append(c.filters, wf)
				}
			}
			for _, br := range rule.BackendRefs {
				b := t.resolveBackend(r, br.BackendObjectReference, weightOf(br.Weight), m, &c.refs)
				for _, f := range br.Filters {
					if wf := t.httpFilter(r, f, m, &c.refs); wf != nil {
						b.Filters = append(b.Filters, wf)
					}
				}
				c.backends = append(c.backends, b)
			}
			return c
		}
		out = append(out, ri)
	}
	return out
}

func weightOf(w *int32) int32 {
	if w == nil {
		return 1
	}
	return *w
}

func httpMatch(m gwv1.HTTPRouteMatch) (*warrenv1.RouteMatch, error) {
	rm := &warrenv1.RouteMatch{Path: &warrenv1.PathMatch{Type: warrenv1.MatchType_PREFIX, Value: "/"}}
	if p := m.Path; p != nil {
		typ := gwv1.PathMatchPathPrefix
		if p.Type != nil {
			typ = *p.Type
		}
		val := "/"
		if p.Value != nil {
			val = *p.Value
		}
		switch typ {
		case gwv1.PathMatchExact, gwv1.PathMatchPathPrefix:
			if !strings.HasPrefix(val, "/") {
				return nil, fmt.Errorf("path %q must start with /", val)
			}
			rm.Path.Type = warrenv1.MatchType_EXACT
			if typ == gwv1.PathMatchPathPrefix {
				rm.Path.Type = warrenv1.MatchType_PREFIX
			}
		case gwv1.PathMatchRegularExpression:
			if _, err := regexp.Compile(val); err != nil {
				return nil, fmt.Errorf("path regex %q: %v", val, err)
			}
			rm.Path.Type = warrenv1.MatchType_REGEX
		default:
			return nil, fmt.Errorf("path match type %q is not supported", typ)
		}
		rm.Path.Value = val
	}
	seen := map[string]bool{}
	for _, h := range m.Headers {
		name := strings.ToLower(string(h.Name))
		if seen[name] { // the spec: only the first of equivalent names counts
			continue
		}
		seen[name] = true
		typ, err := matchType(h.Type, string(h.Name), h.Value)
		if err != nil {
			return nil, fmt.Errorf("header %s: %v", h.Name, err)
		}
		rm.Headers = append(rm.Headers, &warrenv1.HeaderMatch{Type: typ, Name: name, Value: h.Value})
	}
	seenQ := map[string]bool{}
	for _, q := range m.QueryParams {
		if seenQ[string(q.Name)] {
			continue
		}
		seenQ[string(q.Name)] = true
		var typPtr *gwv1.HeaderMatchType
		if q.Type != nil {
			tq := gwv1.HeaderMatchType(*q.Type)
			typPtr = &tq
		}
		typ, err := matchType(typPtr, string(q.Name), q.Value)
		if err != nil {
			return nil, fmt.Errorf("query param %s: %v", q.Name, err)
		}
		rm.QueryParams = append(rm.QueryParams, &warrenv1.QueryParamMatch{Type: typ, Name: string(q.Name), Value: q.Value})
	}
	if m.Method != nil {
		rm.Method = string(*m.Method)
	}
	return rm, nil
}

func matchType(t *gwv1.HeaderMatchType, name, value string) (warrenv1.MatchType, error) {
	if t == nil || *t == gwv1.HeaderMatchExact {
		return warrenv1.MatchType_EXACT, nil
	}
	if *t == gwv1.HeaderMatchRegularExpression {
		if _, err := regexp.Compile(value); err != nil {
			return 0, fmt.Errorf("regex %q: %v", value, err)
		}
		return warrenv1.MatchType_REGEX, nil
	}
	return 0, fmt.Errorf("match type %q is not supported", *t)
}

// checkHTTPFilters rejects filter combinations the spec forbids.
func checkHTTPFilters(rule *gwv1.HTTPRouteRule, where string) string {
	var redirect, rewrite bool
	for i, f := range rule.Filters {
		var mod *gwv1.HTTPPathModifier
		switch f.Type {
		case gwv1.HTTPRouteFilterRequestRedirect:
			if f.RequestRedirect == nil {
				return fmt.Sprintf("%s filter %d: requestRedirect is missing", where, i)
			}
			redirect, mod = true, f.RequestRedirect.Path
		case gwv1.HTTPRouteFilterURLRewrite:
			if f.URLRewrite == nil {
				return fmt.Sprintf("%s filter %d: urlRewrite is missing", where, i)
			}
			rewrite, mod = true, f.URLRewrite.Path
		}
		if mod != nil && mod.Type == gwv1.PrefixMatchHTTPPathModifier {
			for j, m := range rule.Matches {
				if m.Path == nil || m.Path.Type == nil || *m.Path.Type != gwv1.PathMatchPathPrefix {
					return fmt.Sprintf("%s filter %d: ReplacePrefixMatch needs a PathPrefix match, match %d is not one", where, i, j)
				}
			}
		}
	}
	if redirect && rewrite {
		return fmt.Sprintf("%s: RequestRedirect and URLRewrite cannot be combined", where)
	}
	return ""
}

// httpFilter converts one filter; unsupported types return nil (the rule's
// fail500 already records them).
func (t *translator) httpFilter(r *routeInfo, f gwv1.HTTPRouteFilter, m mode, refs *problems) *warrenv1.Filter {
	switch f.Type {
	case gwv1.HTTPRouteFilterRequestHeaderModifier:
		if f.RequestHeaderModifier != nil {
			return &warrenv1.Filter{Kind: &warrenv1.Filter_RequestHeaderModifier{RequestHeaderModifier: headerModifier(f.RequestHeaderModifier)}}
		}
	case gwv1.HTTPRouteFilterResponseHeaderModifier:
		if f.ResponseHeaderModifier != nil {
			return &warrenv1.Filter{Kind: &warrenv1.Filter_ResponseHeaderModifier{ResponseHeaderModifier: headerModifier(f.ResponseHeaderModifier)}}
		}
	case gwv1.HTTPRouteFilterRequestRedirect:
		rr := f.RequestRedirect
		red := &warrenv1.Redirect{StatusCode: 302, Path: pathModifier(rr.Path)}
		if rr.Scheme != nil {
			red.Scheme = *rr.Scheme
		}
		if rr.Hostname != nil {
			red.Hostname = string(*rr.Hostname)
		}
		if rr.Port != nil {
			red.Port = uint32(*rr.Port)
		}
		if rr.StatusCode != nil {
			red.StatusCode = uint32(*rr.StatusCode)
		}
		return &warrenv1.Filter{Kind: &warrenv1.Filter_RequestRedirect{RequestRedirect: red}}
	case gwv1.HTTPRouteFilterURLRewrite:
		rw := &warrenv1.URLRewrite{Path: pathModifier(f.URLRewrite.Path)}
		if f.URLRewrite.Hostname != nil {
			rw.Hostname = string(*f.URLRewrite.Hostname)
		}
		return &warrenv1.Filter{Kind: &warrenv1.Filter_UrlRewrite{UrlRewrite: rw}}
	case gwv1.HTTPRouteFilterRequestMirror:
		if f.RequestMirror != nil {
			return t.mirror(r, f.RequestMirror, m, refs)
		}
	case gwv1.HTTPRouteFilterCORS:
		if c := f.CORS; c != nil {
			out := &warrenv1.CORS{MaxAgeSeconds: uint32(max(c.MaxAge, 0))}
			for _, o := range c.AllowOrigins {
				out.AllowOrigins = append(out.AllowOrigins, string(o))
			}
			if c.AllowCredentials != nil {
				out.AllowCredentials = *c.AllowCredentials
			}
			for _, x := range c.AllowMethods {
				out.AllowMethods = append(out.AllowMethods, string(x))
			}
			for _, x := range c.AllowHeaders {
				out.AllowHeaders = append(out.AllowHeaders, string(x))
			}
			for _, x := range c.ExposeHeaders {
				out.ExposeHeaders = append(out.ExposeHeaders, string(x))
			}
			return &warrenv1.Filter{Kind: &warrenv1.Filter_Cors{Cors: out}}
		}
	}
	return nil
}

func (t *translator) mirror(r *routeInfo, rm *gwv1.HTTPRequestMirrorFilter, m mode, refs *problems) *warrenv1.Filter {
	mir := &warrenv1.Mirror{Numerator: 100, Denominator: 100}
	switch {
	case rm.Fraction != nil:
		mir.Numerator = uint32(max(rm.Fraction.Numerator, 0))
		if rm.Fraction.Denominator != nil {
			mir.Denominator = uint32(max(*rm.Fraction.Denominator, 1))
		}
	case rm.Percent != nil:
		mir.Numerator = uint32(max(*rm.Percent, 0))
	}
	b := t.resolveBackend(r, rm.BackendRef, 1, m, refs)
	b.Weight = 0
	mir.Backend = b
	return &warrenv1.Filter{Kind: &warrenv1.Filter_RequestMirror{RequestMirror: mir}}
}

func headerModifier(h *gwv1.HTTPHeaderFilter) *warrenv1.HeaderModifier {
	out := &warrenv1.HeaderModifier{}
	for _, x := range h.Set {
		out.Set = append(out.Set, &warrenv1.Header{Name: string(x.Name), Value: x.Value})
	}
	for _, x := range h.Add {
		out.Add = append(out.Add, &warrenv1.Header{Name: string(x.Name), Value: x.Value})
	}
	out.Remove = append(out.Remove, h.Remove...)
	return out
}

func pathModifier(p *gwv1.HTTPPathModifier) *warrenv1.PathModifier {
	if p == nil {
		return nil
	}
	switch p.Type {
	case gwv1.FullPathHTTPPathModifier:
		if p.ReplaceFullPath != nil {
			return &warrenv1.PathModifier{Kind: &warrenv1.PathModifier_ReplaceFullPath{ReplaceFullPath: *p.ReplaceFullPath}}
		}
	case gwv1.PrefixMatchHTTPPathModifier:
		if p.ReplacePrefixMatch != nil {
			return &warrenv1.PathModifier{Kind: &warrenv1.PathModifier_ReplacePrefixMatch{ReplacePrefixMatch: *p.ReplacePrefixMatch}}
		}
	}
	return nil
}

var durationRE = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)

// parseDuration parses a Gateway API Duration (GEP-2257).
func parseDuration(d gwv1.Duration) (time.Duration, error) {
	s := string(d)
	if !durationRE.MatchString(s) {
		return 0, fmt.Errorf("duration %q is not in Gateway API format (e.g. 1h2m3s4ms)", s)
	}
	return time.ParseDuration(s)
}

func httpTimeouts(to *gwv1.HTTPRouteTimeouts, where string) (*warrenv1.Timeouts, string) {
	out := &warrenv1.Timeouts{}
	if to.Request != nil {
		d, err := parseDuration(*to.Request)
		if err != nil {
			return nil, fmt.Sprintf("%s timeouts.request: %v", where, err)
		}
		out.RequestMs = uint64(d.Milliseconds())
	}
	if to.BackendRequest != nil {
		d, err := parseDuration(*to.BackendRequest)
		if err != nil {
			return nil, fmt.Sprintf("%s timeouts.backendRequest: %v", where, err)
		}
		out.BackendRequestMs = uint64(d.Milliseconds())
	}
	if out.RequestMs > 0 && out.BackendRequestMs > out.RequestMs {
		return nil, fmt.Sprintf("%s: timeouts.backendRequest (%dms) exceeds timeouts.request (%dms)", where, out.BackendRequestMs, out.RequestMs)
	}
	return out, ""
}

func httpRetry(r *gwv1.HTTPRouteRetry, where string) (*warrenv1.Retry, string) {
	out := &warrenv1.Retry{Attempts: 1}
	if r.Attempts != nil {
		if *r.Attempts < 0 {
			return nil, fmt.Sprintf("%s retry.attempts: %d is negative", where, *r.Attempts)
		}
		out.Attempts = uint32(*r.Attempts)
	}
	for _, c := range r.Codes {
		if c < 400 || c > 599 {
			return nil, fmt.Sprintf("%s retry.codes: %d is not in 400-599", where, c)
		}
		out.Codes = append(out.Codes, uint32(c))
	}
	if r.Backoff != nil {
		d, err := parseDuration(*r.Backoff)
		if err != nil {
			return nil, fmt.Sprintf("%s retry.backoff: %v", where, err)
		}
		out.BackoffMs = uint64(d.Milliseconds())
	}
	return out, ""
}

func sessionPersistence(sp *gwv1.SessionPersistence, where string) (*warrenv1.SessionPersistence, string) {
	out := &warrenv1.SessionPersistence{}
	if sp.Type != nil && *sp.Type == gwv1.HeaderBasedSessionPersistence {
		out.Type = warrenv1.SessionPersistence_HEADER
	}
	if sp.SessionName != nil {
		out.SessionName = *sp.SessionName
	}
	if sp.AbsoluteTimeout != nil {
		d, err := parseDuration(*sp.AbsoluteTimeout)
		if err != nil {
			return nil, fmt.Sprintf("%s sessionPersistence.absoluteTimeout: %v", where, err)
		}
		out.AbsoluteTimeoutMs = uint64(d.Milliseconds())
	}
	if sp.CookieConfig != nil && sp.CookieConfig.LifetimeType != nil && *sp.CookieConfig.LifetimeType == gwv1.PermanentCookieLifetimeType {
		out.Permanent = true
	}
	return out, ""
}

// grpcRules validates the rules of a GRPCRoute.
func (t *translator) grpcRules(r *routeInfo, route *gwv1.GRPCRoute) []*ruleInfo {
	var out []*ruleInfo
	for i := range route.Spec.Rules {
		rule := &route.Spec.Rules[i]
		ri := &ruleInfo{index: i}
		if rule.Name != nil {
			ri.name = string(*rule.Name)
		}
		where := fmt.Sprintf("rule %d", i)
		if ri.name != "" {
			where = fmt.Sprintf("rule %d (%s)", i, ri.name)
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gwv1.GRPCRouteMatch{{}}
		}
		for j, m := range matches {
			rm, err := grpcMatch(m)
			if err != nil {
				ri.dropped = fmt.Sprintf("%s match %d: %v", where, j, err)
				break
			}
			ri.matches = append(ri.matches, rm)
		}
		if ri.dropped == "" && rule.SessionPersistence != nil {
			ri.session, ri.dropped = sessionPersistence(rule.SessionPersistence, where)
		}
		for _, f := range rule.Filters {
			if f.Type == gwv1.GRPCRouteFilterExtensionRef {
				ri.fail500 = fmt.Sprintf("%s: filter %s is not supported; the rule answers an error", where, f.Type)
			}
		}
		ri.compile = func(m mode) *compiled {
			c := &compiled{}
			for _, f := range rule.Filters {
				if wf := t.grpcFilter(r, f, m, &c.refs); wf != nil {
					c.filters = append(c.filters, wf)
				}
			}
			for _, br := range rule.BackendRefs {
				b := t.resolveBackend(r, br.BackendObjectReference, weightOf(br.Weight), m, &c.refs)
				for _, f := range br.Filters {
					if wf := t.grpcFilter(r, f, m, &c.refs); wf != nil {
						b.Filters = append(b.Filters, wf)
					}
				}
				c.backends = append(c.backends, b)
			}
			return c
		}
		out = append(out, ri)
	}
	return out
}

func (t *translator) grpcFilter(r *routeInfo, f gwv1.GRPCRouteFilter, m mode, refs *problems) *warrenv1.Filter {
	switch f.Type {
	case gwv1.GRPCRouteFilterRequestHeaderModifier:
		if f.RequestHeaderModifier != nil {
			return &warrenv1.Filter{Kind: &warrenv1.Filter_RequestHeaderModifier{RequestHeaderModifier: headerModifier(f.RequestHeaderModifier)}}
		}
	case gwv1.GRPCRouteFilterResponseHeaderModifier:
		if f.ResponseHeaderModifier != nil {
			return &warrenv1.Filter{Kind: &warrenv1.Filter_ResponseHeaderModifier{ResponseHeaderModifier: headerModifier(f.ResponseHeaderModifier)}}
		}
	case gwv1.GRPCRouteFilterRequestMirror:
		if f.RequestMirror != nil {
			return t.mirror(r, f.RequestMirror, m, refs)
		}
	}
	return nil
}

func grpcMatch(m gwv1.GRPCRouteMatch) (*warrenv1.RouteMatch, error) {
	rm := &warrenv1.RouteMatch{}
	if mm := m.Method; mm != nil {
		g := &warrenv1.GRPCMethodMatch{Type: warrenv1.MatchType_EXACT}
		if mm.Service != nil {
			g.Service = *mm.Service
		}
		if mm.Method != nil {
			g.Method = *mm.Method
		}
		if mm.Type != nil && *mm.Type == gwv1.GRPCMethodMatchRegularExpression {
			g.Type = warrenv1.MatchType_REGEX
			for _, v := range []string{g.Service, g.Method} {
				if _, err := regexp.Compile(v); err != nil {
					return nil, fmt.Errorf("method regex %q: %v", v, err)
				}
			}
		} else if g.Service == "" && g.Method == "" {
			return nil, fmt.Errorf("an Exact method match needs a service or a method")
		}
		rm.Grpc = g
	}
	seen := map[string]bool{}
	for _, h := range m.Headers {
		name := strings.ToLower(string(h.Name))
		if seen[name] {
			continue
		}
		seen[name] = true
		var typPtr *gwv1.HeaderMatchType
		if h.Type != nil {
			tq := gwv1.HeaderMatchType(*h.Type)
			typPtr = &tq
		}
		typ, err := matchType(typPtr, name, h.Value)
		if err != nil {
			return nil, fmt.Errorf("header %s: %v", h.Name, err)
		}
		rm.Headers = append(rm.Headers, &warrenv1.HeaderMatch{Type: typ, Name: name, Value: h.Value})
	}
	return rm, nil
}
