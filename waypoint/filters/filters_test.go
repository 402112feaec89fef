package filters

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

// TestReplacePrefix is the Gateway API HTTPPathModifier table.
func TestReplacePrefix(t *testing.T) {
	for _, c := range []struct{ path, prefix, repl, want string }{
		{"/foo/bar", "/foo", "/xyz", "/xyz/bar"},
		{"/foo/bar", "/foo", "/xyz/", "/xyz/bar"},
		{"/foo/bar", "/foo/", "/xyz", "/xyz/bar"},
		{"/foo/bar", "/foo/", "/xyz/", "/xyz/bar"},
		{"/foo", "/foo", "/xyz", "/xyz"},
		{"/foo/", "/foo", "/xyz", "/xyz/"},
		{"/foo/bar", "/foo", "", "/bar"},
		{"/foo/", "/foo", "", "/"},
		{"/foo", "/foo", "", "/"},
		{"/foo/", "/foo", "/", "/"},
		{"/foo", "/foo", "/", "/"},
		{"/strip-prefix/three", "/strip-prefix", "/", "/three"},
		{"/prefix/one/two", "/prefix/one", "/one", "/one/two"},
		{"/anything", "/", "/one", "/one/anything"},
		{"/foobar", "/foo", "/xyz", "/foobar"}, // not a segment match: unchanged
	} {
		if got := ReplacePrefix(c.path, c.prefix, c.repl); got != c.want {
			t.Errorf("ReplacePrefix(%q, %q, %q) = %q, want %q", c.path, c.prefix, c.repl, got, c.want)
		}
	}
}

// TestRedirectLocation covers the port rules of tests/httproute-redirect-port-and-scheme.go
// for listeners on 80, 8080 and 443 (https requests).
func TestRedirectLocation(t *testing.T) {
	u32 := func(v uint32) uint32 { return v }
	for _, c := range []struct {
		name     string
		rd       *warrenv1.Redirect
		listener uint32
		https    bool
		host     string
		want     string
		code     int
	}{
		{"80 scheme nil port nil", &warrenv1.Redirect{Hostname: "example.org"}, 80, false, "", "http://example.org/p", 302},
		{"80 scheme nil port 80", &warrenv1.Redirect{Hostname: "example.org", Port: u32(80)}, 80, false, "", "http://example.org/p", 302},
		{"80 scheme nil port 8080", &warrenv1.Redirect{Hostname: "example.org", Port: u32(8080)}, 80, false, "", "http://example.org:8080/p", 302},
		{"80 https port nil", &warrenv1.Redirect{Scheme: "https", Hostname: "example.org"}, 80, false, "", "https://example.org/p", 302},
		{"80 https port 443", &warrenv1.Redirect{Scheme: "https", Hostname: "example.org", Port: u32(443)}, 80, false, "", "https://example.org/p", 302},
		{"80 https port 8443", &warrenv1.Redirect{Scheme: "https", Hostname: "example.org", Port: u32(8443)}, 80, false, "", "https://example.org:8443/p", 302},
		{"8080 scheme nil port nil", &warrenv1.Redirect{Hostname: "example.org"}, 8080, false, "", "http://example.org:8080/p", 302},
		{"8080 scheme nil port 80", &warrenv1.Redirect{Hostname: "example.org", Port: u32(80)}, 8080, false, "", "http://example.org/p", 302},
		{"8080 https port nil", &warrenv1.Redirect{Scheme: "https", Hostname: "example.org"}, 8080, false, "", "https://example.org/p", 302},
		{"443 scheme nil port nil", &warrenv1.Redirect{Hostname: "example.org"}, 443, true, "", "https://example.org/p", 302},
		{"443 scheme nil port 8443", &warrenv1.Redirect{Hostname: "example.org", Port: u32(8443)}, 443, true, "", "https://example.org:8443/p", 302},
		{"443 http port nil", &warrenv1.Redirect{Scheme: "http", Hostname: "example.org"}, 443, true, "", "http://example.org/p", 302},
		{"443 http port 8080", &warrenv1.Redirect{Scheme: "http", Hostname: "example.org", Port: u32(8080)}, 443, true, "", "http://example.org:8080/p", 302},
		{"request host port dropped", &warrenv1.Redirect{StatusCode: 301}, 80, false, "echo:9999", "http://echo/p", 301},
		{"ipv6 host", &warrenv1.Redirect{Port: u32(8083)}, 80, false, "[::1]:80", "http://[::1]:8083/p", 302},
		{"bad status defaults to 302", &warrenv1.Redirect{StatusCode: 200}, 80, false, "", "http://echo/p", 302},
		{"full path", &warrenv1.Redirect{Path: &warrenv1.PathModifier{Kind: &warrenv1.PathModifier_ReplaceFullPath{ReplaceFullPath: "/new"}}}, 80, false, "", "http://echo/new", 302},
	} {
		r := httptest.NewRequest("GET", "http://echo/p", nil)
		if c.host != "" {
			r.Host = c.host
		}
		if c.https {
			r.TLS = &tls.ConnectionState{}
		}
		loc, code := RedirectLocation(c.rd, r, "/p", "/", c.listener)
		if loc != c.want || code != c.code {
			t.Errorf("%s: %s %d, want %s %d", c.name, loc, code, c.want, c.code)
		}
	}
}

func TestHeaderMod(t *testing.T) {
	m := CompileHeaderMod(&warrenv1.HeaderModifier{
		Set:    []*warrenv1.Header{{Name: "x-set", Value: "s"}, {Name: "Host", Value: "new.example"}},
		Add:    []*warrenv1.Header{{Name: "x-add", Value: "a"}},
		Remove: []string{"x-gone"},
	})
	r := httptest.NewRequest("GET", "http://old/", nil)
	r.Header = http.Header{"X-Set": {"1", "2"}, "X-Add": {"0"}, "X-Gone": {"x"}}
	m.ApplyRequest(r)
	if r.Host != "new.example" || r.Header.Get("X-Set") != "s" || len(r.Header["X-Set"]) != 1 ||
		len(r.Header["X-Add"]) != 2 || r.Header.Get("X-Gone") != "" {
		t.Fatalf("%s %v", r.Host, r.Header)
	}
	var nilSet *Set
	nilSet.ApplyRequest(r) // nil-safe
	nilSet.ApplyResponse(r.Header)
}

func TestCORSOrigins(t *testing.T) {
	c := CompileCORS(&warrenv1.CORS{AllowOrigins: []string{"https://www.foo.com", "https://*.bar.com", "http://*:8080"}})
	for o, want := range map[string]bool{
		"https://www.foo.com": true, "HTTPS://WWW.FOO.COM": true, "https://a.b.bar.com": true, "https://bar.com": false,
		"https://.bar.com": false, "http://www.foo.com": false, "http://x:8080": true, "": false, "https://evil.com/.bar.com": true,
	} {
		// The last case shows the wildcard spans any characters, as the
		// spec's "*" does; Origin values never contain a path.
		if got := c.Allowed(o); got != want {
			t.Errorf("Allowed(%q) = %v", o, got)
		}
	}
	if !CompileCORS(&warrenv1.CORS{AllowOrigins: []string{"*"}}).Allowed("https://any") {
		t.Error("* allows any origin")
	}
}

func TestSample(t *testing.T) {
	if !Sample(0, 0) || !Sample(5, 5) || Sample(0, 10) {
		t.Fatal("edge cases")
	}
	n := 0
	for range 10000 {
		if Sample(1, 4) {
			n++
		}
	}
	if n < 2200 || n > 2800 {
		t.Fatalf("1/4 sampled %d of 10000", n)
	}
}
