package waypoint

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/waypoint/accesslog"
)

func TestAccessLogAndMetrics(t *testing.T) {
	a := startBackend(t, "echo-1")
	a.setHandler(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("0123456789"))
	})
	rules := `  - matches: [{path: {type: PathPrefix, value: /logged}}]
    backendRefs: [{name: echo, port: 80}]
`
	client := startBackend(t, "sleep-1")
	clientPod := pod{name: "sleep-1", app: "sleep", ip: "127.0.0.1", port: client.port, ns: "client", sa: "sleep"}
	h := newHarness(t, mesh([]pod{a.pod("echo"), clientPod}, httpRoute("logged", "shop", rules)), harnessOpts{})
	addr := h.listen(echoDest())
	r := h.do(addr, "POST", "/logged/x?y=1", map[string]string{"Host": "echo.shop"}, "twelve bytes")
	if r.status != 200 {
		t.Fatal(r.status)
	}
	_ = h.get(addr, "/unrouted", nil)

	lines := strings.Split(strings.TrimSpace(h.log.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines", len(lines))
	}
	var e accesslog.Entry
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatal(err)
	}
	want := accesslog.Entry{Source: "spiffe://cluster.local/ns/client/sa/sleep", SourceNamespace: "client", Destination: echoKey,
		Port: 80, Protocol: "HTTP/1.1", Method: "POST", Authority: "echo.shop", Path: "/logged/x?y=1",
		Route: "HTTPRoute/shop/logged/0/0", Backend: echoKey, Status: 200, Attempts: 1, BytesIn: 12, BytesOut: 10}
	got := e
	got.Start, got.DurationMs, got.SourceAddr, got.Endpoint, got.TraceID = want.Start, 0, "", "", ""
	if got != want {
		t.Errorf("entry\n got %+v\nwant %+v", got, want)
	}
	if e.Endpoint != a.ip+":"+itoa(a.port) || len(e.TraceID) != 32 || e.DurationMs <= 0 || e.Start.IsZero() {
		t.Errorf("endpoint %q trace %q duration %v", e.Endpoint, e.TraceID, e.DurationMs)
	}
	var e2 accesslog.Entry
	_ = json.Unmarshal([]byte(lines[1]), &e2)
	if e2.Status != 404 || e2.Flags != "NR" || e2.Route != "" {
		t.Errorf("no-route entry %+v", e2)
	}

	// Workload names are the canonical ones the control plane sends (the
	// owner, here the app label), found by the source address.
	labels := map[string]string{"reporter": "waypoint", "source_workload": "sleep", "source_workload_namespace": "client",
		"source_principal": "spiffe://cluster.local/ns/client/sa/sleep", "destination_service": "echo.shop.svc.cluster.local",
		"destination_service_namespace": "shop", "destination_workload": "echo", "response_code": "200", "request_protocol": "http"}
	if got := h.counter(metricRequests, labels); got != 1 {
		t.Errorf("istio_requests_total%v = %v", labels, got)
	}
	if got := h.counter(metricDuration, labels); got != 1 {
		t.Errorf("istio_request_duration_milliseconds count = %v", got)
	}
	if got := h.counter(metricRequests, map[string]string{"response_code": "404", "response_flags": "NR", "destination_workload": "unknown"}); got != 1 {
		t.Errorf("404 counted %v", got)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestTraceparent(t *testing.T) {
	a := startBackend(t, "echo-1")
	h := newHarness(t, mesh([]pod{a.pod("echo")}), harnessOpts{})
	addr := h.listen(echoDest())
	// Generated when absent.
	r := h.get(addr, "/", nil)
	tp := http.Header(r.seen.Header).Get("Traceparent")
	if len(tp) != 55 || !strings.HasPrefix(tp, "00-") || !strings.HasSuffix(tp, "-01") {
		t.Fatalf("generated traceparent %q", tp)
	}
	// Propagated: same trace, new parent (the waypoint's span), flags kept.
	in := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	r = h.get(addr, "/", map[string]string{"Traceparent": in, "Tracestate": "k=v"})
	tp = http.Header(r.seen.Header).Get("Traceparent")
	if !strings.HasPrefix(tp, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || strings.Contains(tp, "00f067aa0ba902b7") || !strings.HasSuffix(tp, "-00") {
		t.Fatalf("propagated traceparent %q from %q", tp, in)
	}
	if http.Header(r.seen.Header).Get("Tracestate") != "k=v" {
		t.Fatalf("tracestate dropped")
	}
	// Invalid: replaced, tracestate dropped.
	r = h.get(addr, "/", map[string]string{"Traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "Tracestate": "k=v"})
	tp = http.Header(r.seen.Header).Get("Traceparent")
	if strings.Contains(tp, "00000000000000000000000000000000") || http.Header(r.seen.Header).Get("Tracestate") != "" {
		t.Fatalf("invalid traceparent kept: %q", tp)
	}
}

func TestStoreReplaceIsAtomicAndKeepsLastGood(t *testing.T) {
	a, b := startBackend(t, "echo-1"), startBackend(t, "echo-v2-1")
	toV1 := httpRoute("r", "shop", "  - backendRefs: [{name: echo, port: 80}]\n")
	toV2 := httpRoute("r", "shop", "  - backendRefs: [{name: echo-v2, port: 80}]\n")
	h := newHarness(t, mesh([]pod{a.pod("echo"), b.pod("echo-v2")}, toV1), harnessOpts{})
	addr := h.listen(echoDest())
	if r := h.get(addr, "/", nil); r.seen.Backend != "echo-1" {
		t.Fatalf("before: %q", r.seen.Backend)
	}
	v := h.store.Version()
	if err := h.store.Replace(translateYAML(t, mesh([]pod{a.pod("echo"), b.pod("echo-v2")}, toV2))); err != nil {
		t.Fatal(err)
	}
	if h.store.Version() != v+1 {
		t.Fatalf("version %d after %d", h.store.Version(), v)
	}
	if r := h.get(addr, "/", nil); r.seen.Backend != "echo-v2-1" {
		t.Fatalf("after replace: %q", r.seen.Backend)
	}
	// A bad config (a regex that does not compile, a key that does not
	// match its resource) is refused and the last good one stays.
	bad := h.store.Config().Clone()
	l7 := bad.L7Services[echoKey]
	broken := &warrenv1.L7Service{Name: l7.GetName(), Namespace: l7.GetNamespace(), Hostname: l7.GetHostname(), Ports: []*warrenv1.L7Port{{
		Port: 80, Protocol: warrenv1.Protocol_HTTP, Producer: &warrenv1.RouteTable{Kind: "HTTPRoute", Routes: []*warrenv1.Route{{
			Match: &warrenv1.RouteMatch{Path: &warrenv1.PathMatch{Type: warrenv1.MatchType_REGEX, Value: "(["}}}}}}}}
	bad.L7Services[echoKey] = broken
	if err := h.store.Replace(bad); err == nil || !strings.HasPrefix(err.Error(), "waypoint: router") {
		t.Fatalf("bad regex accepted: %v", err)
	}
	bad2 := h.store.Config().Clone()
	bad2.Services["shop/wrong"] = bad2.Services[echoKey]
	if err := bad2.Validate(); err == nil {
		t.Fatalf("mismatched key accepted")
	}
	if r := h.get(addr, "/", nil); r.seen.Backend != "echo-v2-1" {
		t.Fatalf("after refused replace: %q", r.seen.Backend)
	}
	// Update applies a delta.
	if err := h.store.Update(func(c *Config) { delete(c.L7Services, echoKey) }); err != nil {
		t.Fatal(err)
	}
	spread := map[string]bool{}
	for range 10 {
		spread[h.get(addr, "/", nil).seen.Backend] = true
	}
	if !spread["echo-1"] || spread["echo-v2-1"] {
		t.Fatalf("without routes: default routing to echo's endpoints, got %v", spread)
	}
}
