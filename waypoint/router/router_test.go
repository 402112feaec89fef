package router

import (
	"net/http"
	"testing"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

func route(name string, m *warrenv1.RouteMatch) *warrenv1.Route {
	return &warrenv1.Route{Source: &warrenv1.RouteRef{Kind: "HTTPRoute", Namespace: "ns", Name: name}, Match: m}
}

func path(t warrenv1.MatchType, v string) *warrenv1.PathMatch {
	return &warrenv1.PathMatch{Type: t, Value: v}
}

func mustTable(t *testing.T, kind string, routes ...*warrenv1.Route) *Table {
	t.Helper()
	tbl, err := CompileTable(&warrenv1.RouteTable{Kind: kind, Routes: routes})
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

func match(tbl *Table, method, p, query string, h http.Header) string {
	if h == nil {
		h = http.Header{}
	}
	q := Request{Method: method, Path: p, RawQuery: query, Host: "echo", Header: h}
	r := tbl.Match(&q)
	if r == nil {
		return ""
	}
	return r.Proto.GetSource().GetName()
}

func TestMatchKindsAndFirstMatchWins(t *testing.T) {
	E, P, R := warrenv1.MatchType_EXACT, warrenv1.MatchType_PREFIX, warrenv1.MatchType_REGEX
	tbl := mustTable(t, "HTTPRoute",
		// Deliberately not in spec precedence: the engine must not re-sort.
		route("prefix-api", &warrenv1.RouteMatch{Path: path(P, "/api")}),
		route("exact-api-v1", &warrenv1.RouteMatch{Path: path(E, "/api/v1")}),
		route("regex", &warrenv1.RouteMatch{Path: path(R, "/re/[a-z]+")}),
		route("header", &warrenv1.RouteMatch{Path: path(P, "/h"), Headers: []*warrenv1.HeaderMatch{{Name: "x-a", Value: "1"}, {Type: R, Name: "x-b", Value: "b.*"}}}),
		route("host", &warrenv1.RouteMatch{Path: path(P, "/host"), Headers: []*warrenv1.HeaderMatch{{Name: "host", Value: "echo"}}}),
		route("query", &warrenv1.RouteMatch{Path: path(P, "/q"), QueryParams: []*warrenv1.QueryParamMatch{{Name: "k", Value: "v"}}}),
		route("method", &warrenv1.RouteMatch{Path: path(P, "/m"), Method: "PUT"}),
		route("slash", &warrenv1.RouteMatch{Path: path(P, "/s/")}),
	)
	for _, c := range []struct {
		method, path, query string
		h                   http.Header
		want                string
	}{
		{"GET", "/api/v1", "", nil, "prefix-api"}, // first match wins over a later exact
		{"GET", "/api", "", nil, "prefix-api"},
		{"GET", "/apis", "", nil, ""},
		{"GET", "/re/abc", "", nil, "regex"},
		{"GET", "/re/abc1", "", nil, ""},
		{"GET", "/h", "", http.Header{"X-A": {"1"}, "X-B": {"bee"}}, "header"},
		{"GET", "/h", "", http.Header{"X-A": {"1"}}, ""},
		{"GET", "/h", "", http.Header{"X-A": {"1", "2"}, "X-B": {"b"}}, ""}, // multiple values join as "1,2"
		{"GET", "/host/x", "", nil, "host"},
		{"GET", "/q", "k=v&k=w", nil, "query"},
		{"GET", "/q", "k=w&k=v", nil, ""},
		{"GET", "/q", "%zz&k=v", nil, "query"}, // a malformed pair does not hide the rest
		{"PUT", "/m", "", nil, "method"},
		{"GET", "/m", "", nil, ""},
		{"GET", "/s", "", nil, "slash"},
		{"GET", "/s/t", "", nil, "slash"},
		{"GET", "/st", "", nil, ""},
	} {
		if got := match(tbl, c.method, c.path, c.query, c.h); got != c.want {
			t.Errorf("%s %s?%s %v: %q, want %q", c.method, c.path, c.query, c.h, got, c.want)
		}
	}
}

func TestGRPCMatch(t *testing.T) {
	R := warrenv1.MatchType_REGEX
	tbl := mustTable(t, "GRPCRoute",
		route("check", &warrenv1.RouteMatch{Grpc: &warrenv1.GRPCMethodMatch{Service: "grpc.health.v1.Health", Method: "Check"}}),
		route("svc", &warrenv1.RouteMatch{Grpc: &warrenv1.GRPCMethodMatch{Service: "grpc.health.v1.Health"}}),
		route("method-any-svc", &warrenv1.RouteMatch{Grpc: &warrenv1.GRPCMethodMatch{Method: "Ping"}}),
		route("regex", &warrenv1.RouteMatch{Grpc: &warrenv1.GRPCMethodMatch{Type: R, Service: `echo\..*`, Method: "Ec.*"}}),
	)
	if !tbl.GRPC() {
		t.Fatal("GRPC table")
	}
	for p, want := range map[string]string{
		"/grpc.health.v1.Health/Check": "check",
		"/grpc.health.v1.Health/Watch": "svc",
		"/a.B/Ping":                    "method-any-svc",
		"/echo.Echo/Echo":              "regex",
		"/echo.Echo/Other":             "",
		"/nope":                        "",
		"/a/b/c":                       "",
		"//Ping":                       "",
	} {
		if got := match(tbl, "POST", p, "", nil); got != want {
			t.Errorf("%s: %q, want %q", p, got, want)
		}
	}
	all := mustTable(t, "GRPCRoute", route("all", &warrenv1.RouteMatch{}))
	if match(all, "POST", "/x.Y/Z", "", nil) != "all" {
		t.Error("empty match matches all")
	}
}

func TestCompileRejectsBadRegex(t *testing.T) {
	for _, m := range []*warrenv1.RouteMatch{
		{Path: path(warrenv1.MatchType_REGEX, "([")},
		{Headers: []*warrenv1.HeaderMatch{{Type: warrenv1.MatchType_REGEX, Name: "a", Value: "*"}}},
		{QueryParams: []*warrenv1.QueryParamMatch{{Type: warrenv1.MatchType_REGEX, Name: "a", Value: "(?P<"}}},
		{Grpc: &warrenv1.GRPCMethodMatch{Type: warrenv1.MatchType_REGEX, Service: "["}},
	} {
		if _, err := CompileTable(&warrenv1.RouteTable{Routes: []*warrenv1.Route{route("bad", m)}}); err == nil {
			t.Errorf("%v compiled", m)
		}
	}
}

func TestSelectConsumerProducerDefault(t *testing.T) {
	svc, err := CompileService(&warrenv1.L7Service{Name: "echo", Ports: []*warrenv1.L7Port{
		{Port: 80, Protocol: warrenv1.Protocol_HTTP,
			Producer:  &warrenv1.RouteTable{Routes: []*warrenv1.Route{route("producer", nil)}},
			Consumers: map[string]*warrenv1.RouteTable{"client": {Routes: []*warrenv1.Route{route("consumer", nil)}}}},
		{Port: 81, Protocol: warrenv1.Protocol_HTTP},
	}})
	if err != nil {
		t.Fatal(err)
	}
	name := func(tb *Table) string {
		if tb == nil {
			return "default"
		}
		return tb.Routes[0].Proto.GetSource().GetName()
	}
	for _, c := range []struct {
		port     uint32
		ns, want string
		consumer bool
	}{
		{80, "client", "consumer", true},
		{80, "other", "producer", false},
		{80, "", "producer", false},
		{81, "client", "default", false},
		{82, "client", "default", false},
	} {
		tb, cons := svc.Select(c.port, c.ns)
		if name(tb) != c.want || cons != c.consumer {
			t.Errorf("port %d ns %q: %s %v, want %s %v", c.port, c.ns, name(tb), cons, c.want, c.consumer)
		}
	}
	if svc.Protocol(80) != warrenv1.Protocol_HTTP || svc.Protocol(99) != warrenv1.Protocol_PROTOCOL_UNSPECIFIED {
		t.Error("Protocol")
	}
}

func TestPrefixMatches(t *testing.T) {
	for _, c := range []struct {
		prefix, path string
		want         bool
	}{
		{"/abc", "/abc", true}, {"/abc", "/abc/", true}, {"/abc", "/abc/def", true}, {"/abc", "/abcd", false},
		{"/abc/", "/abc", true}, {"/abc/", "/abc/def", true}, {"/abc/", "/abcd", false}, {"/", "/anything", true},
		{"/a/b", "/a", false}, {"/a/b", "/a/bc", false},
	} {
		if got := PrefixMatches(c.prefix, c.path); got != c.want {
			t.Errorf("PrefixMatches(%q, %q) = %v", c.prefix, c.path, got)
		}
	}
}

func TestNormalizePath(t *testing.T) {
	for in, want := range map[string]string{
		"/":               "/",
		"":                "/",
		"/a/b":            "/a/b",
		"/a/./b":          "/a/b",
		"/a/../b":         "/b",
		"/../../a":        "/a",
		"/a/b/..":         "/a/",
		"/a/.":            "/a/",
		"/a/..b/c":        "/a/..b/c",
		"/a/b./c":         "/a/b./c",
		"/api/x/../admin": "/api/admin",
		"a":               "/a",
	} {
		if got := NormalizePath(in); got != want {
			t.Errorf("NormalizePath(%q) = %q, want %q", in, got, want)
		}
	}
}
