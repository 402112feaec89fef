package waypoint

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRedirect uses the upstream mesh conformance manifests
// (tests/mesh/httproute-redirect-{port,scheme,path,host-and-status}.yaml)
// and their expected Location headers.
func TestRedirect(t *testing.T) {
	a := startBackend(t, "echo-1")
	rules := `  - matches: [{path: {type: PathPrefix, value: /port}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 8083}}]
  - matches: [{path: {type: PathPrefix, value: /port-and-host}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, port: 8083}}]
  - matches: [{path: {type: PathPrefix, value: /port-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 8083, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /scheme}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-and-host}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, hostname: example.org}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-https-and-port-8443}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, port: 8443}}]
  - matches: [{path: {type: PathPrefix, value: /scheme-http-and-port-80}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: http, port: 80}}]
  - matches: [{path: {type: PathPrefix, value: /original-prefix}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}}]
  - matches: [{path: {type: PathPrefix, value: /full}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}}}]
  - matches: [{path: {type: PathPrefix, value: /path-and-host}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}}]
  - matches: [{path: {type: PathPrefix, value: /path-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}}]
  - matches: [{path: {type: PathPrefix, value: /host-303}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 303}}]
  - matches: [{path: {type: PathPrefix, value: /s307}}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 307}}]
  - matches: [{path: {type: PathPrefix, value: /s308}}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 308}}]
`
	h := newHarness(t, mesh([]pod{a.pod("echo")}, httpRoute("redirects", "shop", rules)), harnessOpts{})
	addr := h.listen(echoDest())
	for _, c := range []struct {
		path   string
		status int
		loc    string
	}{
		{"/port", 302, "http://echo:8083/port"},
		{"/port-and-host", 302, "http://example.org:8083/port-and-host"},
		{"/port-and-status", 301, "http://echo:8083/port-and-status"},
		// a scheme change without a port: the scheme's default port, not shown
		{"/scheme", 302, "https://echo/scheme"},
		{"/scheme-and-host", 302, "https://example.org/scheme-and-host"},
		{"/scheme-and-status", 301, "https://echo/scheme-and-status"},
		{"/scheme-https-and-port-8443", 302, "https://echo:8443/scheme-https-and-port-8443"},
		{"/scheme-http-and-port-80", 302, "http://echo/scheme-http-and-port-80"},
		{"/original-prefix/lemon", 302, "http://echo/replacement-prefix/lemon"},
		{"/full/path/original", 302, "http://echo/full-path-replacement"},
		{"/path-and-host", 302, "http://example.org/replacement-prefix"},
		{"/path-and-status", 301, "http://echo/replacement-prefix"},
		{"/host-303?q=1", 303, "http://example.org/host-303?q=1"},
		{"/s307", 307, "http://echo/s307"},
		{"/s308", 308, "http://echo/s308"},
	} {
		// The client addressed the Service by its short name; the request's
		// Host port (if any) is not the redirect's port.
		r := h.get(addr, c.path, map[string]string{"Host": "echo:80"})
		if r.status != c.status || r.header.Get("Location") != c.loc {
			t.Errorf("%s: %d %q, want %d %q", c.path, r.status, r.header.Get("Location"), c.status, c.loc)
		}
	}
	if a.hits.Load() != 0 {
		t.Fatalf("redirects reached the backend %d times", a.hits.Load())
	}
}

// TestRedirectListenerPort: without scheme or port the Location keeps
// the Service port the request was addressed to.
func TestRedirectListenerPort(t *testing.T) {
	a := startBackend(t, "echo-1")
	doc := mesh([]pod{a.pod("echo")}, `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.30
  ports: [{name: http, port: 8080, targetPort: http}]
  selector: {app: echo}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop, generation: 1}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules:
  - filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org}}]
`)
	h := newHarness(t, doc, harnessOpts{})
	addr := h.listen(Destination{Service: "shop/web.shop.svc.cluster.local", Port: 8080})
	r := h.get(addr, "/a", nil)
	if r.status != 302 || r.header.Get("Location") != "http://example.org:8080/a" {
		t.Fatalf("%d %q", r.status, r.header.Get("Location"))
	}
}

// TestURLRewrite uses tests/httproute-rewrite-path.yaml and
// tests/httproute-rewrite-host.yaml expectations.
func TestURLRewrite(t *testing.T) {
	a := startBackend(t, "echo-1")
	rules := `  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}]
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /strip-prefix}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /full/one}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /one}}}]
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /prefix/rewrite-path-and-modify-headers}}]
    filters:
    - {type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /prefix}}}
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Header-Set, value: set-overwrites-values}], add: [{name: X-Header-Add, value: header-val-1}], remove: [X-Header-Remove]}}
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /host}}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: one.example.org}}]
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /xyz/}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /abc/}}}]
    backendRefs: [{name: echo, port: 80}]
`
	h := newHarness(t, mesh([]pod{a.pod("echo")}, httpRoute("rewrite", "shop", rules)), harnessOpts{})
	addr := h.listen(echoDest())
	for _, c := range []struct{ in, out, host string }{
		{"/prefix/one/two", "/one/two", ""},
		{"/prefix/one", "/one", ""},
		{"/strip-prefix/three", "/three", ""},
		{"/strip-prefix", "/", ""},
		{"/strip-prefix/", "/", ""},
		{"/full/one/two", "/one", ""},
		{"/prefix/rewrite-path-and-modify-headers/one", "/prefix/one", ""},
		{"/host/x", "/host/x", "one.example.org"},
		{"/xyz/bar", "/abc/bar", ""},
		{"/xyz", "/abc", ""},
		{"/prefix/one/two?q=1", "/one/two", ""},
	} {
		r := h.get(addr, c.in, map[string]string{"X-Header-Set": "old", "X-Header-Add": "header-val-0", "X-Header-Remove": "gone"})
		if r.status != 200 || r.seen.Path != c.out {
			t.Errorf("%s → %d %q, want %q", c.in, r.status, r.seen.Path, c.out)
		}
		if c.host != "" && r.seen.Host != c.host {
			t.Errorf("%s: host %q, want %q", c.in, r.seen.Host, c.host)
		}
		if strings.HasPrefix(c.in, "/prefix/rewrite") {
			hd := http.Header(r.seen.Header)
			if hd.Get("X-Header-Set") != "set-overwrites-values" || strings.Join(hd.Values("X-Header-Add"), ",") != "header-val-0,header-val-1" || hd.Get("X-Header-Remove") != "" {
				t.Errorf("header modifier with rewrite: %v", r.seen.Header)
			}
		}
		if strings.Contains(c.in, "?q=1") && r.seen.Query != "q=1" {
			t.Errorf("query lost: %q", r.seen.Query)
		}
	}
}

func TestHeaderModifiers(t *testing.T) {
	a, b := startBackend(t, "echo-1"), startBackend(t, "echo-v2-1")
	rules := `  - matches: [{path: {type: PathPrefix, value: /req}}]
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Set, value: v}], add: [{name: X-Add, value: a2}], remove: [X-Remove]}}]
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /resp}}]
    filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: X-Backend, value: hidden}], add: [{name: X-Resp-Add, value: r1}], remove: [Content-Type]}}]
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /per-backend}}]
    backendRefs:
    - name: echo
      port: 80
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Which, value: v1}]}}, {type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: X-Resp-Which, value: v1}]}}]
    - name: echo-v2
      port: 80
      filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Which, value: v2}]}}, {type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: X-Resp-Which, value: v2}]}}]
`
	h := newHarness(t, mesh([]pod{a.pod("echo"), b.pod("echo-v2")}, httpRoute("mods", "shop", rules)), harnessOpts{})
	addr := h.listen(echoDest())
	r := h.get(addr, "/req", map[string]string{"X-Set": "old", "X-Add": "a1", "X-Remove": "x"})
	hd := http.Header(r.seen.Header)
	if hd.Get("X-Set") != "v" || strings.Join(hd.Values("X-Add"), ",") != "a1,a2" || len(hd.Values("X-Remove")) != 0 {
		t.Errorf("request modifier: %v", r.seen.Header)
	}
	r = h.get(addr, "/resp", nil)
	if r.header.Get("X-Backend") != "hidden" || r.header.Get("X-Resp-Add") != "r1" || r.header.Get("Content-Type") != "" {
		t.Errorf("response modifier: %v", r.header)
	}
	seen := map[string]bool{}
	for range 40 {
		r := h.get(addr, "/per-backend", nil)
		var want string
		switch r.header.Get("X-Backend") {
		case "echo-1":
			want = "v1"
		case "echo-v2-1":
			want = "v2"
		}
		if got := http.Header(r.seen.Header).Get("X-Which"); got != want || r.header.Get("X-Resp-Which") != want {
			t.Fatalf("backend %s got request %q response %q, want %q", r.header.Get("X-Backend"), got, r.header.Get("X-Resp-Which"), want)
		}
		seen[want] = true
	}
	if !seen["v1"] || !seen["v2"] {
		t.Fatalf("both backends should be used: %v", seen)
	}
}

func TestMirrorFraction(t *testing.T) {
	a, m := startBackend(t, "echo-1"), startBackend(t, "mirror-1")
	m.setHandler(func(w http.ResponseWriter, r *http.Request) {
		// A slow, failing mirror must not affect responses.
		time.Sleep(20 * time.Millisecond)
		w.WriteHeader(500)
	})
	rules := `  - matches: [{path: {type: PathPrefix, value: /all}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: echo-v2, port: 80}}}]
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /fraction}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: echo-v2, port: 80}, fraction: {numerator: 1, denominator: 4}}}]
    backendRefs: [{name: echo, port: 80}]
`
	h := newHarness(t, mesh([]pod{a.pod("echo"), m.pod("echo-v2")}, httpRoute("mirror", "shop", rules)), harnessOpts{})
	addr := h.listen(echoDest())
	const n = 400
	for i := range 20 {
		r := h.do(addr, "POST", "/all", map[string]string{"X-I": "1"}, "payload")
		if r.status != 200 || r.seen.Backend != "echo-1" {
			t.Fatalf("mirrored request %d: %d %q", i, r.status, r.seen.Backend)
		}
	}
	if !eventually(t, 10*time.Second, func() bool { return m.hits.Load() == 20 }) {
		t.Fatalf("mirror got %d of 20", m.hits.Load())
	}
	for _, s := range m.requests() {
		if s.Body != "payload" || s.Path != "/all" || s.Method != "POST" || http.Header(s.Header).Get("X-I") != "1" {
			t.Fatalf("mirror copy differs: %+v", s)
		}
	}
	for range n {
		if r := h.get(addr, "/fraction", nil); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
	}
	want := float64(n) / 4
	eventually(t, 10*time.Second, func() bool {
		return h.counter(metricMirrors, map[string]string{"result": "sent"}) >= float64(m.hits.Load()-20) && m.hits.Load() >= 20+int64(want*0.6)
	})
	got := float64(m.hits.Load() - 20)
	// 1/4 of 400: mean 100, sd ≈ 8.7; ±40% is > 4 sd.
	if got < want*0.6 || got > want*1.4 {
		t.Fatalf("fraction 1/4 of %d mirrored %v times", n, got)
	}
}

// TestCORS follows tests/httproute-cors.go expectations.
func TestCORS(t *testing.T) {
	a := startBackend(t, "echo-1")
	rules := `  - matches: [{path: {type: PathPrefix, value: /cors-1}}]
    filters:
    - type: CORS
      cors:
        allowOrigins: ["https://www.foo.com", "https://*.bar.com"]
        allowMethods: [GET, OPTIONS]
        allowHeaders: [x-header-1, x-header-2]
        exposeHeaders: [x-header-3, x-header-4]
        allowCredentials: true
        maxAge: 3600
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /cors-wild}}]
    filters:
    - type: CORS
      cors: {allowOrigins: ["*"], allowMethods: ["*"], allowHeaders: ["*"]}
    backendRefs: [{name: echo, port: 80}]
`
	h := newHarness(t, mesh([]pod{a.pod("echo")}, httpRoute("cors", "shop", rules)), harnessOpts{})
	addr := h.listen(echoDest())
	pre := func(path, origin, method, headers string) reply {
		hdr := map[string]string{"Origin": origin, "Access-Control-Request-Method": method}
		if headers != "" {
			hdr["Access-Control-Request-Headers"] = headers
		}
		return h.do(addr, "OPTIONS", path, hdr, "")
	}
	for _, origin := range []string{"https://www.foo.com", "https://www.bar.com", "https://xpto.www.bar.com"} {
		r := pre("/cors-1", origin, "GET", "x-header-1, x-header-2")
		if r.status != 204 && r.status != 200 {
			t.Fatalf("preflight %s: %d", origin, r.status)
		}
		want := map[string]string{"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": "GET, OPTIONS",
			"Access-Control-Allow-Headers": "x-header-1, x-header-2", "Access-Control-Expose-Headers": "x-header-3, x-header-4",
			"Access-Control-Max-Age": "3600", "Access-Control-Allow-Credentials": "true"}
		for k, v := range want {
			if r.header.Get(k) != v {
				t.Errorf("preflight %s: %s = %q, want %q", origin, k, r.header.Get(k), v)
			}
		}
	}
	if a.hits.Load() != 0 {
		t.Fatalf("preflights reached the backend")
	}
	if r := pre("/cors-1", "https://foobar.com", "GET", ""); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("disallowed origin got %q", r.header.Get("Access-Control-Allow-Origin"))
	}
	r := h.get(addr, "/cors-1", map[string]string{"Origin": "https://www.foo.com"})
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "https://www.foo.com" || r.header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("actual request: %d %v", r.status, r.header)
	}
	if r := h.get(addr, "/cors-1", map[string]string{"Origin": "https://foobar.com"}); r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("actual request from a disallowed origin: %d %v", r.status, r.header)
	}
	r = pre("/cors-wild", "https://other.foo.com", "PUT", "x-header-1, x-header-2")
	if r.header.Get("Access-Control-Allow-Methods") != "PUT" || r.header.Get("Access-Control-Allow-Headers") != "x-header-1, x-header-2" ||
		r.header.Get("Access-Control-Allow-Credentials") != "" || r.header.Get("Access-Control-Allow-Origin") == "" {
		t.Errorf("wildcard preflight: %v", r.header)
	}
}
