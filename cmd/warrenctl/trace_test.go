package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestTracePredictions runs one request per case through the recorded
// mesh and checks the outcome, the route, the shares per backend and per
// endpoint, and the decisive explanation.
func TestTracePredictions(t *testing.T) {
	m := testMesh(t, "mesh")
	type share map[string]float64 // backend "svc:port" or endpoint workload → percent
	cases := []struct {
		name, from, method, url string
		header                  http.Header
		outcome                 string
		status                  int
		route                   string
		backends, endpoints     share
		hop                     string // a decision or detail that must appear
	}{
		{name: "consumer table replaces the producer table", from: "client/curl-0", url: "http://web.shop/anything",
			outcome: outcomeForwarded, route: "HTTPRoute client/web-for-client rule 0 match 0",
			backends: share{"shop/web-v2.shop.svc.cluster.local:80": 100}, endpoints: share{"shop/web-v2-0": 100},
			hop: "URLRewrite: path /anything becomes /v2/anything"},
		{name: "producer exact path, two endpoints evenly", from: "frontend/fe-0", url: "http://web.shop/login",
			outcome: outcomeForwarded, route: "HTTPRoute shop/web rule 0 (login) match 0",
			backends: share{"shop/web-v1.shop.svc.cluster.local:80": 100}, endpoints: share{"shop/web-v1-0": 50, "shop/web-v1-1": 50},
			hop: "request headers: set x-route: login"},
		{name: "header match wins over the plain prefix", from: "frontend/fe-0", url: "http://web.shop/api/items", header: http.Header{"X-Canary": {"true"}},
			outcome: outcomeForwarded, route: "HTTPRoute shop/web rule 1 (canary) match 0",
			backends: share{"shop/web-v2.shop.svc.cluster.local:80": 100}},
		{name: "weighted split 90/10", from: "frontend/fe-0", url: "http://web.shop/api/items",
			outcome: outcomeForwarded, route: "HTTPRoute shop/web rule 2 (api-split) match 0",
			backends:  share{"shop/web-v1.shop.svc.cluster.local:80": 90, "shop/web-v2.shop.svc.cluster.local:80": 10},
			endpoints: share{"shop/web-v1-0": 45, "shop/web-v1-1": 45, "shop/web-v2-0": 10},
			hop:       "retry: up to 2 retries on connect failure or 503"},
		{name: "prefix matches whole segments only", from: "frontend/fe-0", url: "http://web.shop/apix",
			outcome: outcomeNoRoute, status: 404, hop: "path /apix is not under prefix /api (prefixes match whole segments)"},
		{name: "redirect answers at the waypoint", from: "frontend/fe-0", url: "http://web.shop/old/page?x=1",
			outcome: outcomeRedirect, status: 301, route: "HTTPRoute shop/web rule 3 (moved) match 0", hop: "Location: http://web.shop/new/page?x=1"},
		{name: "method and regex", from: "frontend/fe-0", method: "POST", url: "http://web.shop/upload/42",
			outcome: outcomeForwarded, route: "HTTPRoute shop/web rule 4 (upload) match 0",
			backends: share{"shop/api.shop.svc.cluster.local:80": 100}, endpoints: share{"shop/api-0": 100},
			hop: "L4 policy: allowed (no authorization policy applies)"},
		{name: "wrong method falls through to 404", from: "frontend/fe-0", url: "http://web.shop/upload/42",
			outcome: outcomeNoRoute, status: 404, hop: "method is GET, the route wants POST"},
		{name: "regex must match the whole path", from: "frontend/fe-0", method: "POST", url: "http://web.shop/upload/42/x",
			outcome: outcomeNoRoute, status: 404, hop: "does not match regex /upload/[0-9]+ (whole path)"},
		{name: "dot segments are resolved before matching", from: "frontend/fe-0", url: "http://web.shop/api/../login",
			outcome: outcomeForwarded, route: "HTTPRoute shop/web rule 0 (login) match 0"},
		{name: "waypoint DENY policy answers 403", from: "frontend/fe-0", url: "http://web.shop/admin/users",
			outcome: outcomeDenied, status: 403, hop: "DENY policy shop/no-admin matches (rule 0)"},
		{name: "gRPC method match", from: "frontend/fe-0", url: "grpc://greeter.shop:7070/helloworld.Greeter/SayHello",
			outcome: outcomeForwarded, route: "GRPCRoute shop/greeter rule 0 match 0",
			backends: share{"shop/greeter.shop.svc.cluster.local:7070": 100}, endpoints: share{"shop/greeter-0": 100}},
		{name: "gRPC unknown method is UNIMPLEMENTED", from: "frontend/fe-0", url: "grpc://greeter.shop:7070/helloworld.Greeter/Other",
			outcome: outcomeNoRoute, status: 404, hop: "gRPC method is Other, the route wants SayHello"},
		{name: "gRPC inferred from the route kind", from: "frontend/fe-0", url: "http://greeter.shop:7070/helloworld.Greeter/SayHello",
			outcome: outcomeForwarded, route: "GRPCRoute shop/greeter rule 0 match 0"},
		{name: "no routes on the port: Service endpoints", from: "frontend/fe-0", url: "http://web-v2.shop/",
			outcome: outcomeForwarded, backends: share{"shop/web-v2.shop.svc.cluster.local:80": 100}, hop: "no routes on port 80"},
		{name: "no waypoint: ztunnel prefers the client's node", from: "frontend/fe-0", url: "http://direct.shop/",
			outcome: outcomeForwarded, endpoints: share{"shop/web-v1-0": 100, "shop/web-v1-1": 0, "shop/web-v2-0": 0},
			hop: "routing preference node → zone → any: same node (node-a) (1 of 3 endpoints)"},
		{name: "by cluster IP", from: "frontend/fe-0", url: "http://10.96.1.20/login",
			outcome: outcomeForwarded, route: "HTTPRoute shop/web rule 0 (login) match 0"},
		{name: "pod IP is not Service traffic", from: "frontend/fe-0", url: "http://10.244.2.32:8080/",
			outcome: outcomeForwarded, endpoints: share{"shop/web-v2-0": 100}, hop: "traffic to a pod IP is not Service traffic"},
		{name: "client outside the mesh to a strict workload is refused", from: "legacy/legacy-0", url: "http://api.shop/",
			outcome: outcomeRefused, hop: "REFUSED, strict mTLS"},
		{name: "client outside the mesh to permissive workloads", from: "legacy/legacy-0", url: "http://web-v2.shop/",
			outcome: outcomeForwarded, hop: "plaintext accepted on :15006 (permissive)"},
		{name: "unknown host passes through", from: "frontend/fe-0", url: "http://example.com/",
			outcome: outcomePassthrough},
		{name: "missing port is refused", from: "frontend/fe-0", url: "http://web.shop:81/",
			outcome: outcomeRefused, hop: "Service shop/web has no port 81"},
		{name: "opaque traffic meets the waypoint's path-only DENY at L4", from: "frontend/fe-0", url: "https://api.shop:80/",
			outcome: outcomeDenied, hop: "at L4 there is no HTTP to look at, so the rule's method/path/header conditions are dropped"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns, name, _ := strings.Cut(c.from, "/")
			p, err := predictTrace(m.out, traceWhy{m}, traceRequest{FromNamespace: ns, FromName: name, Method: c.method, URL: c.url, Header: c.header})
			if err != nil {
				t.Fatal(err)
			}
			r := p.Result
			if r.Outcome != c.outcome || r.Status != c.status || r.Route != c.route {
				t.Errorf("outcome %s status %d route %q (%s), want %s %d %q", r.Outcome, r.Status, r.Route, r.Summary, c.outcome, c.status, c.route)
			}
			for k, want := range c.backends {
				got, ok := -1.0, false
				for _, b := range r.Backends {
					if b.Service+":"+itoa(int(b.Port)) == k {
						got, ok = b.Percent, true
					}
				}
				if !ok || got != want {
					t.Errorf("backend %s share %v, want %v", k, got, want)
				}
			}
			for k, want := range c.endpoints {
				got := -1.0
				for _, b := range r.Backends {
					for _, ep := range b.Endpoints {
						if ep.Workload == k {
							got = ep.Percent
						}
					}
				}
				if got != want {
					t.Errorf("endpoint %s share %v, want %v", k, got, want)
				}
			}
			if c.hop != "" && !strings.Contains(traceText(p), c.hop) {
				t.Errorf("no hop mentions %q:\n%s", c.hop, traceText(p))
			}
		})
	}
}

// traceText is every decision, detail and route check of a prediction.
func traceText(p *tracePrediction) string {
	var b strings.Builder
	for _, h := range p.Hops {
		b.WriteString(h.Decision + "\n")
		for _, d := range h.Details {
			b.WriteString(d + "\n")
		}
		for _, rc := range h.Routes {
			b.WriteString(rc.Route + " " + rc.Why + "\n")
		}
	}
	return b.String()
}

// TestTraceRouteChecksStopAtTheMatch: entries are tried in table order
// and the first match ends the search.
func TestTraceRouteChecksStopAtTheMatch(t *testing.T) {
	m := testMesh(t, "mesh")
	p, err := predictTrace(m.out, traceWhy{m}, traceRequest{FromNamespace: "frontend", FromName: "fe-0", URL: "http://web.shop/api/x"})
	if err != nil {
		t.Fatal(err)
	}
	var checks []traceRouteCheck
	for _, h := range p.Hops {
		checks = append(checks, h.Routes...)
	}
	// Precedence: Exact /login, the regex, the /api prefix with a header
	// (more conditions), then /api; the match ends the walk.
	if len(checks) != 4 || checks[0].Matched || checks[1].Matched || checks[2].Matched || !checks[3].Matched {
		t.Fatalf("checks = %+v", checks)
	}
	if !strings.Contains(checks[2].Why, "header x-canary is missing") {
		t.Errorf("why = %q", checks[2].Why)
	}
}

func TestTraceErrors(t *testing.T) {
	m := testMesh(t, "mesh")
	for _, c := range []struct{ from, url, want string }{
		{"shop/nope", "http://web.shop/", "pod shop/nope not found"},
		{"frontend/fe-0", "ftp://web.shop/", `scheme "ftp"`},
		{"frontend/fe-0", "http://web.shop:99999/", "is not a port"},
		{"frontend/fe-0", "tcp://web.shop", "needs a port"},
	} {
		ns, name, _ := strings.Cut(c.from, "/")
		_, err := predictTrace(m.out, traceWhy{m}, traceRequest{FromNamespace: ns, FromName: name, URL: c.url})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %s: err = %v, want %q", c.from, c.url, err, c.want)
		}
	}
}

// TestTraceL7PolicyAtZtunnel: a Service-targeted DENY with only a path
// condition is also enforced by ztunnel on the Service's workloads,
// where it matches every connection (WA023's case).
func TestTraceL7PolicyAtZtunnel(t *testing.T) {
	m := testMesh(t, "l7-policy-at-ztunnel")
	p, err := predictTrace(m.out, traceWhy{m}, traceRequest{FromNamespace: "client", FromName: "curl-0", URL: "http://web.shop/ok"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Result.Outcome != outcomeRefused || p.Result.Status != 503 {
		t.Fatalf("result = %+v", p.Result)
	}
	if !strings.Contains(traceText(p), "so the rule's method/path/header conditions are dropped") || !strings.Contains(traceText(p), "ztunnel on node-a authenticates") {
		t.Errorf("explanation missing:\n%s", traceText(p))
	}
}

func TestNormalizePath(t *testing.T) {
	for in, want := range map[string]string{
		"":              "/",
		"a":             "/a",
		"/a/./b":        "/a/b",
		"/a/../b":       "/b",
		"/a/b/..":       "/a/",
		"/../../x":      "/x",
		"/a/.b/..c":     "/a/.b/..c",
		"/plain/path/":  "/plain/path/",
		"/x/%2e%2e/y":   "/x/%2e%2e/y",
		"/api/../admin": "/admin",
	} {
		if got := normalizePath(in); got != want {
			t.Errorf("normalizePath(%q) = %q, want %q", in, got, want)
		}
	}
}
