package main

// Route matching for trace, with the reason a route did not match. The
// semantics are the waypoint's (waypoint/router; trace_parity_test.go
// checks agreement on a shared table of requests):
//
//   - the table is already in precedence order: the first match wins;
//   - checks run in the order method, path, gRPC method, headers, query,
//     and the first failing one is the reason;
//   - path Exact compares the normalized path; Prefix matches on segment
//     boundaries ("/abc" matches "/abc", "/abc/" and "/abc/d", never
//     "/abcd"; a trailing "/" on the prefix is ignored); RegularExpression
//     must match the whole path (RE2);
//   - headers are Exact or RegularExpression on the whole value (repeated
//     headers joined with ","); "host" / ":authority" read the Host;
//   - query parameters use the first value of the name.

import (
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"regexp"
	"strings"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

// matchRequest is what route matching reads from a request.
type matchRequest struct {
	Method string
	// Path is normalized and escaped, without the query.
	Path     string
	RawQuery string
	Host     string
	Header   http.Header
}

// normalizePath resolves "." and ".." segments (RFC 3986 §5.2.4) keeping
// a trailing "/", as the waypoint does before matching and authorizing.
func normalizePath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	segs := strings.Split(p[1:], "/")
	dots := false
	for _, s := range segs {
		if s == "." || s == ".." {
			dots = true
			break
		}
	}
	if !dots {
		return p
	}
	out := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			trailing = last
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			trailing = last
		default:
			out = append(out, s)
			trailing = false
		}
	}
	r := "/" + strings.Join(out, "/")
	if trailing && !strings.HasSuffix(r, "/") {
		r += "/"
	}
	return r
}

// prefixMatches is the Gateway API PathPrefix rule on segment boundaries.
func prefixMatches(prefix, path string) bool {
	prefix = strings.TrimRight(prefix, "/")
	if prefix == "" {
		return strings.HasPrefix(path, "/") || path == ""
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

func anchored(expr string) (*regexp.Regexp, error) { return regexp.Compile("^(?:" + expr + ")$") }

// grpcMethodOf splits "/pkg.Service/Method".
func grpcMethodOf(path string) (service, method string, ok bool) {
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

// matchRoute reports whether m matches q; when it does not, the reason
// names the first condition that failed.
func matchRoute(m *warrenv1.RouteMatch, q *matchRequest) (bool, string) {
	if want := m.GetMethod(); want != "" && want != q.Method {
		return false, fmt.Sprintf("method is %s, the route wants %s", q.Method, want)
	}
	if p := m.GetPath(); p != nil {
		switch p.GetType() {
		case warrenv1.MatchType_EXACT:
			if q.Path != p.GetValue() {
				return false, fmt.Sprintf("path %s is not exactly %s", q.Path, p.GetValue())
			}
		case warrenv1.MatchType_PREFIX:
			if !prefixMatches(p.GetValue(), q.Path) {
				return false, fmt.Sprintf("path %s is not under prefix %s (prefixes match whole segments)", q.Path, p.GetValue())
			}
		case warrenv1.MatchType_REGEX:
			re, err := anchored(p.GetValue())
			if err != nil {
				return false, fmt.Sprintf("path regex %q does not compile: the waypoint rejects this table", p.GetValue())
			}
			if !re.MatchString(q.Path) {
				return false, fmt.Sprintf("path %s does not match regex %s (whole path)", q.Path, p.GetValue())
			}
		}
	}
	if g := m.GetGrpc(); g != nil && (g.GetService() != "" || g.GetMethod() != "") {
		if ok, why := matchGRPC(g, q.Path); !ok {
			return false, why
		}
	}
	for _, h := range m.GetHeaders() {
		name := h.GetName()
		var v string
		if strings.EqualFold(name, "host") || name == ":authority" {
			v = q.Host
		} else {
			vs, ok := q.Header[textproto.CanonicalMIMEHeaderKey(name)]
			if !ok {
				return false, fmt.Sprintf("header %s is missing (the route wants %s)", name, describeValue(h.GetType(), h.GetValue()))
			}
			v = strings.Join(vs, ",")
		}
		if ok, bad := matchValue(h.GetType(), h.GetValue(), v); !ok {
			return false, fmt.Sprintf("header %s is %q, the route wants %s%s", name, v, describeValue(h.GetType(), h.GetValue()), bad)
		}
	}
	var query url.Values
	for _, qp := range m.GetQueryParams() {
		if query == nil {
			query, _ = url.ParseQuery(q.RawQuery)
			if query == nil {
				query = url.Values{}
			}
		}
		vs, ok := query[qp.GetName()]
		if !ok || len(vs) == 0 {
			return false, fmt.Sprintf("query parameter %s is missing (the route wants %s)", qp.GetName(), describeValue(qp.GetType(), qp.GetValue()))
		}
		if ok, bad := matchValue(qp.GetType(), qp.GetValue(), vs[0]); !ok {
			return false, fmt.Sprintf("query parameter %s is %q, the route wants %s%s", qp.GetName(), vs[0], describeValue(qp.GetType(), qp.GetValue()), bad)
		}
	}
	return true, ""
}

func matchValue(t warrenv1.MatchType, want, got string) (bool, string) {
	if t == warrenv1.MatchType_REGEX {
		re, err := anchored(want)
		if err != nil {
			return false, " (the regex does not compile: the waypoint rejects this table)"
		}
		return re.MatchString(got), ""
	}
	return got == want, ""
}

func matchGRPC(g *warrenv1.GRPCMethodMatch, path string) (bool, string) {
	svc, m, ok := grpcMethodOf(path)
	if !ok {
		return false, fmt.Sprintf("path %s is not a gRPC method path /<service>/<method>", path)
	}
	if g.GetType() == warrenv1.MatchType_REGEX {
		if s := g.GetService(); s != "" {
			re, err := anchored(s)
			if err != nil || !re.MatchString(svc) {
				return false, fmt.Sprintf("gRPC service %s does not match regex %s", svc, s)
			}
		}
		if mm := g.GetMethod(); mm != "" {
			re, err := anchored(mm)
			if err != nil || !re.MatchString(m) {
				return false, fmt.Sprintf("gRPC method %s does not match regex %s", m, mm)
			}
		}
		return true, ""
	}
	if s := g.GetService(); s != "" && s != svc {
		return false, fmt.Sprintf("gRPC service is %s, the route wants %s", svc, s)
	}
	if mm := g.GetMethod(); mm != "" && mm != m {
		return false, fmt.Sprintf("gRPC method is %s, the route wants %s", m, mm)
	}
	return true, ""
}

func describeValue(t warrenv1.MatchType, v string) string {
	if t == warrenv1.MatchType_REGEX {
		return "regex " + v
	}
	return fmt.Sprintf("%q", v)
}

// describeMatch renders a route's match for people: "PathPrefix /api,
// GET, header x-env=\"canary\"". An empty match is "any request".
func describeMatch(m *warrenv1.RouteMatch) string {
	var parts []string
	if g := m.GetGrpc(); g != nil && (g.GetService() != "" || g.GetMethod() != "") {
		kind := ""
		if g.GetType() == warrenv1.MatchType_REGEX {
			kind = "~"
		}
		parts = append(parts, fmt.Sprintf("gRPC %s%s/%s", kind, orStar(g.GetService()), orStar(g.GetMethod())))
	}
	if p := m.GetPath(); p != nil && !(p.GetType() == warrenv1.MatchType_PREFIX && strings.TrimRight(p.GetValue(), "/") == "") {
		switch p.GetType() {
		case warrenv1.MatchType_EXACT:
			parts = append(parts, "Exact "+p.GetValue())
		case warrenv1.MatchType_PREFIX:
			parts = append(parts, "PathPrefix "+p.GetValue())
		case warrenv1.MatchType_REGEX:
			parts = append(parts, "RegularExpression "+p.GetValue())
		}
	}
	if m.GetMethod() != "" {
		parts = append(parts, m.GetMethod())
	}
	for _, h := range m.GetHeaders() {
		parts = append(parts, "header "+h.GetName()+matchOp(h.GetType())+h.GetValue())
	}
	for _, q := range m.GetQueryParams() {
		parts = append(parts, "query "+q.GetName()+matchOp(q.GetType())+q.GetValue())
	}
	if len(parts) == 0 {
		return "any request"
	}
	return strings.Join(parts, ", ")
}

func matchOp(t warrenv1.MatchType) string {
	if t == warrenv1.MatchType_REGEX {
		return "~"
	}
	return "="
}

func orStar(s string) string {
	if s == "" {
		return "*"
	}
	return s
}

// refString renders a route's source as "HTTPRoute ns/name rule 0 match 1".
func refString(ref *warrenv1.RouteRef) string {
	if ref == nil {
		return "default route (Service endpoints)"
	}
	s := fmt.Sprintf("%s %s/%s rule %d", ref.GetKind(), ref.GetNamespace(), ref.GetName(), ref.GetRuleIndex())
	if ref.GetRuleName() != "" {
		s += " (" + ref.GetRuleName() + ")"
	}
	return s + fmt.Sprintf(" match %d", ref.GetMatchIndex())
}
