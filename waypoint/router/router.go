package router

import (
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"regexp"
	"strings"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

// Route is one compiled table entry.
type Route struct {
	// Index is the position in its table (precedence order).
	Index int
	// Proto is the route as the control plane sent it.
	Proto *warrenv1.Route
	// Data belongs to the caller: the waypoint hangs the route's compiled
	// filters, backends and policies here.
	Data any

	method  string
	path    pathMatcher
	headers []valueMatcher
	query   []valueMatcher
	grpc    *grpcMatcher
}

// Table is a compiled RouteTable.
type Table struct {
	// Kind is "HTTPRoute" or "GRPCRoute".
	Kind   string
	Routes []*Route
	// needQuery is true when any route matches on query parameters.
	needQuery bool
}

// GRPC reports whether the table belongs to a GRPCRoute (no match then
// answers UNIMPLEMENTED rather than 404).
func (t *Table) GRPC() bool { return t != nil && t.Kind == "GRPCRoute" }

type pathKind uint8

const (
	pathAny pathKind = iota
	pathExact
	pathPrefix
	pathRegex
)

type pathMatcher struct {
	kind  pathKind
	value string // exact value, or prefix without trailing "/"
	re    *regexp.Regexp
}

type valueMatcher struct {
	name  string // canonical header key, or query name
	host  bool   // header "host": match the request's Host
	exact string
	re    *regexp.Regexp
}

type grpcMatcher struct {
	service, method     string
	serviceRe, methodRe *regexp.Regexp
}

func compileRegex(s string) (*regexp.Regexp, error) {
	return regexp.Compile("^(?:" + s + ")$")
}

// CompileTable compiles a RouteTable; a nil table compiles to nil.
func CompileTable(t *warrenv1.RouteTable) (*Table, error) {
	if t == nil {
		return nil, nil
	}
	out := &Table{Kind: t.GetKind(), Routes: make([]*Route, 0, len(t.GetRoutes()))}
	if out.Kind == "" {
		out.Kind = "HTTPRoute"
	}
	for i, r := range t.GetRoutes() {
		cr, err := compileRoute(i, r)
		if err != nil {
			return nil, fmt.Errorf("waypoint: router: route %d (%s): %w", i, RefString(r.GetSource()), err)
		}
		if len(cr.query) > 0 {
			out.needQuery = true
		}
		out.Routes = append(out.Routes, cr)
	}
	return out, nil
}

func compileRoute(i int, r *warrenv1.Route) (*Route, error) {
	cr := &Route{Index: i, Proto: r}
	m := r.GetMatch()
	cr.method = m.GetMethod()
	if p := m.GetPath(); p != nil {
		switch p.GetType() {
		case warrenv1.MatchType_EXACT:
			cr.path = pathMatcher{kind: pathExact, value: p.GetValue()}
		case warrenv1.MatchType_PREFIX:
			v := strings.TrimRight(p.GetValue(), "/")
			if v == "" {
				cr.path = pathMatcher{kind: pathAny}
			} else {
				cr.path = pathMatcher{kind: pathPrefix, value: v}
			}
		case warrenv1.MatchType_REGEX:
			re, err := compileRegex(p.GetValue())
			if err != nil {
				return nil, fmt.Errorf("path regex: %w", err)
			}
			cr.path = pathMatcher{kind: pathRegex, re: re}
		}
	}
	for _, h := range m.GetHeaders() {
		vm := valueMatcher{name: textproto.CanonicalMIMEHeaderKey(h.GetName())}
		vm.host = strings.EqualFold(h.GetName(), "host") || h.GetName() == ":authority"
		if err := vm.setValue(h.GetType(), h.GetValue()); err != nil {
			return nil, fmt.Errorf("header %s: %w", h.GetName(), err)
		}
		cr.headers = append(cr.headers, vm)
	}
	for _, q := range m.GetQueryParams() {
		vm := valueMatcher{name: q.GetName()}
		if err := vm.setValue(q.GetType(), q.GetValue()); err != nil {
			return nil, fmt.Errorf("query %s: %w", q.GetName(), err)
		}
		cr.query = append(cr.query, vm)
	}
	if g := m.GetGrpc(); g != nil {
		gm := &grpcMatcher{service: g.GetService(), method: g.GetMethod()}
		if g.GetType() == warrenv1.MatchType_REGEX {
			var err error
			if gm.service != "" {
				if gm.serviceRe, err = compileRegex(gm.service); err != nil {
					return nil, fmt.Errorf("grpc service regex: %w", err)
				}
			}
			if gm.method != "" {
				if gm.methodRe, err = compileRegex(gm.method); err != nil {
					return nil, fmt.Errorf("grpc method regex: %w", err)
				}
			}
		}
		if gm.service != "" || gm.method != "" {
			cr.grpc = gm
		}
	}
	return cr, nil
}

func (v *valueMatcher) setValue(t warrenv1.MatchType, s string) error {
	if t == warrenv1.MatchType_REGEX {
		re, err := compileRegex(s)
		if err != nil {
			return err
		}
		v.re = re
		return nil
	}
	v.exact = s
	return nil
}

func (v *valueMatcher) matches(s string) bool {
	if v.re != nil {
		return v.re.MatchString(s)
	}
	return s == v.exact
}

// Request is what matching reads from a request.
type Request struct {
	Method string
	// Path is the (normalized) path without the query.
	Path string
	// RawQuery is the query string without "?".
	RawQuery string
	Host     string
	Header   http.Header

	query url.Values
}

// FromHTTP builds a Request for r with the given (normalized) path.
func FromHTTP(r *http.Request, path string) Request {
	return Request{Method: r.Method, Path: path, RawQuery: r.URL.RawQuery, Host: r.Host, Header: r.Header}
}

func (q *Request) firstQuery(name string) (string, bool) {
	if q.query == nil {
		// ParseQuery keeps what parsed before an error.
		q.query, _ = url.ParseQuery(q.RawQuery)
		if q.query == nil {
			q.query = url.Values{}
		}
	}
	vs, ok := q.query[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// Match returns the first route of t matching q, or nil.
func (t *Table) Match(q *Request) *Route {
	if t == nil {
		return nil
	}
	for _, r := range t.Routes {
		if r.matches(q) {
			return r
		}
	}
	return nil
}

func (r *Route) matches(q *Request) bool {
	if r.method != "" && r.method != q.Method {
		return false
	}
	if !r.path.matches(q.Path) {
		return false
	}
	if r.grpc != nil && !r.grpc.matches(q.Path) {
		return false
	}
	for i := range r.headers {
		h := &r.headers[i]
		var v string
		if h.host {
			v = q.Host
		} else {
			vs, ok := q.Header[h.name]
			if !ok {
				return false
			}
			if len(vs) == 1 {
				v = vs[0]
			} else {
				v = strings.Join(vs, ",")
			}
		}
		if !h.matches(v) {
			return false
		}
	}
	for i := range r.query {
		v, ok := q.firstQuery(r.query[i].name)
		if !ok || !r.query[i].matches(v) {
			return false
		}
	}
	return true
}

func (p *pathMatcher) matches(path string) bool {
	switch p.kind {
	case pathExact:
		return path == p.value
	case pathPrefix:
		return PrefixMatches(p.value, path)
	case pathRegex:
		return p.re.MatchString(path)
	}
	return true
}

// PrefixMatches reports whether path matches the Gateway API PathPrefix
// prefix, element by element; a trailing "/" on prefix is ignored.
func PrefixMatches(prefix, path string) bool {
	prefix = strings.TrimRight(prefix, "/")
	if prefix == "" {
		return strings.HasPrefix(path, "/") || path == ""
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// GRPCMethod splits a gRPC request path "/pkg.Service/Method".
func GRPCMethod(path string) (service, method string, ok bool) {
	if len(path) < 4 || path[0] != '/' {
		return "", "", false
	}
	i := strings.IndexByte(path[1:], '/')
	if i <= 0 || i == len(path)-2 {
		return "", "", false
	}
	service, method = path[1:i+1], path[i+2:]
	if strings.IndexByte(method, '/') >= 0 {
		return "", "", false
	}
	return service, method, true
}

func (g *grpcMatcher) matches(path string) bool {
	svc, m, ok := GRPCMethod(path)
	if !ok {
		return false
	}
	if g.serviceRe != nil || g.methodRe != nil {
		if g.serviceRe != nil && !g.serviceRe.MatchString(svc) {
			return false
		}
		if g.service != "" && g.serviceRe == nil && g.service != svc {
			return false
		}
		if g.methodRe != nil && !g.methodRe.MatchString(m) {
			return false
		}
		return true
	}
	return (g.service == "" || g.service == svc) && (g.method == "" || g.method == m)
}

// MatchedPrefix is the route's PREFIX path value ("" for other kinds):
// what ReplacePrefixMatch replaces.
func (r *Route) MatchedPrefix() string {
	if p := r.Proto.GetMatch().GetPath(); p != nil && p.GetType() == warrenv1.MatchType_PREFIX {
		return p.GetValue()
	}
	return ""
}

// RefString renders a RouteRef as "Kind/namespace/name/rule/match".
func RefString(ref *warrenv1.RouteRef) string {
	if ref == nil {
		return "default"
	}
	s := fmt.Sprintf("%s/%s/%s/%d/%d", ref.GetKind(), ref.GetNamespace(), ref.GetName(), ref.GetRuleIndex(), ref.GetMatchIndex())
	if ref.GetRuleName() != "" {
		s += "/" + ref.GetRuleName()
	}
	return s
}

// Port is one compiled L7Port.
type Port struct {
	Port      uint32
	Protocol  warrenv1.Protocol
	Producer  *Table
	Consumers map[string]*Table
}

// Service is a compiled L7Service.
type Service struct {
	Proto *warrenv1.L7Service
	Ports map[uint32]*Port
}

// CompileService compiles every table of an L7Service.
func CompileService(s *warrenv1.L7Service) (*Service, error) {
	out := &Service{Proto: s, Ports: map[uint32]*Port{}}
	for _, p := range s.GetPorts() {
		cp := &Port{Port: p.GetPort(), Protocol: p.GetProtocol()}
		var err error
		if cp.Producer, err = CompileTable(p.GetProducer()); err != nil {
			return nil, fmt.Errorf("waypoint: router: %s port %d producer: %w", s.GetName(), p.GetPort(), err)
		}
		for ns, t := range p.GetConsumers() {
			ct, err := CompileTable(t)
			if err != nil {
				return nil, fmt.Errorf("waypoint: router: %s port %d consumers %s: %w", s.GetName(), p.GetPort(), ns, err)
			}
			if cp.Consumers == nil {
				cp.Consumers = map[string]*Table{}
			}
			cp.Consumers[ns] = ct
		}
		out.Ports[cp.Port] = cp
	}
	return out, nil
}

// Select picks the table for a request to port from a client in clientNS:
// the consumer table of that namespace if there is one, else the producer
// table. consumer reports which was chosen. A nil table means the port
// has no routes: default routing to the Service's own endpoints.
func (s *Service) Select(port uint32, clientNS string) (t *Table, consumer bool) {
	if s == nil {
		return nil, false
	}
	p := s.Ports[port]
	if p == nil {
		return nil, false
	}
	if ct, ok := p.Consumers[clientNS]; ok && clientNS != "" && ct != nil {
		return ct, true
	}
	return p.Producer, false
}

// Protocol is the declared protocol of a port (PROTOCOL_UNSPECIFIED when
// the port is unknown).
func (s *Service) Protocol(port uint32) warrenv1.Protocol {
	if s == nil || s.Ports[port] == nil {
		return warrenv1.Protocol_PROTOCOL_UNSPECIFIED
	}
	return s.Ports[port].Protocol
}
