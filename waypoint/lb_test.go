package waypoint

import (
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/warren-mesh/warren/waypoint/lb"
)

func containsLine(log, s string) bool { return strings.Contains(log, s) }

func TestWeightedBackends(t *testing.T) {
	a, b := startBackend(t, "echo-1"), startBackend(t, "echo-v2-1")
	rules := `  - matches: [{path: {type: PathPrefix, value: /split}}]
    backendRefs: [{name: echo, port: 80, weight: 90}, {name: echo-v2, port: 80, weight: 10}]
  - matches: [{path: {type: PathPrefix, value: /zero}}]
    backendRefs: [{name: echo, port: 80, weight: 0}, {name: echo-v2, port: 80}]
`
	h := newHarness(t, mesh([]pod{a.pod("echo"), b.pod("echo-v2")}, httpRoute("split", "shop", rules)), harnessOpts{})
	addr := h.listen(echoDest())
	const n = 1000
	got := map[string]int{}
	for range n {
		got[h.get(addr, "/split", nil).seen.Backend]++
	}
	// 10% of 1000: mean 100, sd ≈ 9.5; accept 60..140 (> 4 sd).
	if got["echo-v2-1"] < 60 || got["echo-v2-1"] > 140 || got["echo-1"]+got["echo-v2-1"] != n {
		t.Errorf("90/10 split over %d requests: %v", n, got)
	}
	for range 50 {
		if r := h.get(addr, "/zero", nil); r.seen.Backend != "echo-v2-1" {
			t.Fatalf("weight 0 backend chosen: %q", r.seen.Backend)
		}
	}
}

func TestSessionPersistence(t *testing.T) {
	var pods []pod
	for _, n := range []string{"echo-1", "echo-2", "echo-3"} {
		pods = append(pods, startBackend(t, n).pod("echo"))
	}
	rules := `  - matches: [{path: {type: PathPrefix, value: /cookie}}]
    sessionPersistence: {sessionName: sid, type: Cookie, absoluteTimeout: 1h, cookieConfig: {lifetimeType: Permanent}}
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /header}}]
    sessionPersistence: {sessionName: x-session, type: Header}
    backendRefs: [{name: echo, port: 80}]
`
	h := newHarness(t, mesh(pods, httpRoute("sticky", "shop", rules)), harnessOpts{})
	addr := h.listen(echoDest())

	r := h.get(addr, "/cookie", nil)
	cookies := (&http.Response{Header: r.header}).Cookies()
	if len(cookies) != 1 || cookies[0].Name != "sid" || cookies[0].MaxAge != 3600 || !cookies[0].HttpOnly {
		t.Fatalf("session cookie: %v", r.header.Values("Set-Cookie"))
	}
	first := r.seen.Backend
	for range 30 {
		r := h.get(addr, "/cookie", map[string]string{"Cookie": "sid=" + cookies[0].Value})
		if r.seen.Backend != first {
			t.Fatalf("cookie session moved from %s to %s", first, r.seen.Backend)
		}
		if r.header.Get("Set-Cookie") != "" {
			t.Fatalf("a live session is not re-issued")
		}
	}

	r = h.get(addr, "/header", nil)
	sess := r.header.Get("X-Session")
	if sess == "" {
		t.Fatalf("no session header")
	}
	first = r.seen.Backend
	for range 30 {
		if r := h.get(addr, "/header", map[string]string{"X-Session": sess}); r.seen.Backend != first {
			t.Fatalf("header session moved from %s to %s", first, r.seen.Backend)
		}
	}
	// Without the session requests spread over the endpoints.
	spread := map[string]bool{}
	for range 60 {
		spread[h.get(addr, "/header", nil).seen.Backend] = true
	}
	if len(spread) < 2 {
		t.Fatalf("requests without a session all went to %v", spread)
	}
	// A session naming an endpoint that is gone gets a new one.
	stale := lb.EncodeSession("127.0.0.1:1", h.eng.now(), h.eng.now())
	r = h.get(addr, "/header", map[string]string{"X-Session": stale})
	if r.status != 200 || r.header.Get("X-Session") == "" || r.header.Get("X-Session") == stale {
		t.Fatalf("stale session: %d %q", r.status, r.header.Get("X-Session"))
	}
}

// TestOutlierEjection: an endpoint refusing connections is ejected after
// consecutive connect failures and gets no more traffic.
func TestOutlierEjection(t *testing.T) {
	live := startBackend(t, "echo-1")
	ip := loopbackIP()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // connection refused from now on
	dead := pod{name: "echo-dead", app: "echo", ip: ip, port: deadPort}
	h := newHarness(t, mesh([]pod{live.pod("echo"), dead}), harnessOpts{store: StoreOptions{Outlier: lb.Outlier{ConsecutiveFailures: 3}}})
	addr := h.listen(echoDest())
	failures := 0
	for range 100 {
		r := h.get(addr, "/", nil)
		switch r.status {
		case 200:
		case 503:
			failures++
		default:
			t.Fatalf("status %d", r.status)
		}
	}
	if failures != 3 {
		t.Errorf("%d connect failures before ejection, want 3", failures)
	}
	if got := h.counter(metricEjections, map[string]string{"destination_service": echoKey}); got != 1 {
		t.Errorf("ejections counted %v", got)
	}
	if !containsLine(h.log.String(), `"flags":"UF"`) {
		t.Errorf("access log lacks UF")
	}
}

// TestConnectFailureRetriedElsewhere: with a retry policy a refused
// connect is retried on another endpoint, so no request fails.
func TestConnectFailureRetriedElsewhere(t *testing.T) {
	live := startBackend(t, "echo-1")
	ip := loopbackIP()
	ln, _ := net.Listen("tcp", ip+":0")
	deadPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	rules := `  - retry: {codes: [503], attempts: 1, backoff: 1ms}
    backendRefs: [{name: echo, port: 80}]
`
	h := newHarness(t, mesh([]pod{live.pod("echo"), {name: "echo-dead", app: "echo", ip: ip, port: deadPort}}, httpRoute("r", "shop", rules)),
		harnessOpts{store: StoreOptions{Outlier: lb.Outlier{ConsecutiveFailures: -1}}})
	addr := h.listen(echoDest())
	for i := range 40 {
		if r := h.get(addr, "/", nil); r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
}
