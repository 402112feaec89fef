package waypoint

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/warren-mesh/warren/waypoint/listener"
	"github.com/warren-mesh/warren/waypoint/upstream"
)

// listenMeta serves the engine on a plaintext listener whose connections
// all carry m (what the HBONE accept side hands over).
func (h *harness) listenMeta(m listener.Meta) string {
	h.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mm := m
			mm.SourceAddr = c.RemoteAddr().String()
			go h.eng.ServeConn(c, mm)
		}
	}()
	return ln.Addr().String()
}

// recordingDialer dials TCP and records what each dial's context carried.
type recordingDialer struct {
	mu    sync.Mutex
	dials []dialSeen
}

type dialSeen struct {
	ep          upstream.Endpoint
	traceparent string
	meta        *listener.Meta
}

func (d *recordingDialer) Dial(ctx context.Context, ep upstream.Endpoint) (net.Conn, error) {
	m, _ := listener.MetaFrom(ctx)
	d.mu.Lock()
	d.dials = append(d.dials, dialSeen{ep: ep, traceparent: upstream.TraceparentFrom(ctx), meta: m})
	d.mu.Unlock()
	return upstream.TCPDialer{}.Dial(ctx, ep)
}

func (d *recordingDialer) seen() []dialSeen {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]dialSeen(nil), d.dials...)
}

// meshFor returns the fixture with the waypoint serving workload traffic
// too (waypoint-for all).
func meshForAll(pods []pod, extra ...string) string {
	return strings.Replace(mesh(pods, extra...), "metadata: {name: waypoint, namespace: shop, generation: 1}",
		"metadata: {name: waypoint, namespace: shop, generation: 1, labels: {warren.io/waypoint-for: all}}", 1)
}

func TestResolve(t *testing.T) {
	a := startBackend(t, "echo-1")
	h := newHarness(t, meshForAll([]pod{a.pod("echo")}), harnessOpts{})
	for _, c := range []struct {
		name string
		dst  string
		want Target
	}{
		{"service VIP, served port", "10.96.0.20:80",
			Target{Kind: TargetService, Key: echoKey, Port: 80, PortServed: true, Protocol: 2, Waypoint: "shop/waypoint"}},
		{"service VIP, other port", "10.96.0.20:81",
			Target{Kind: TargetService, Key: echoKey, Port: 81, Waypoint: "shop/waypoint"}},
		{"IPv4-mapped VIP", "[::ffff:10.96.0.20]:80",
			Target{Kind: TargetService, Key: echoKey, Port: 80, PortServed: true, Protocol: 2, Waypoint: "shop/waypoint"}},
		{"pod address, any port", a.ip + ":9999",
			Target{Kind: TargetWorkload, Key: "shop/echo-1", Port: 9999, PortServed: true, Waypoint: "shop/waypoint"}},
		{"unknown address", "10.96.7.7:80", Target{Port: 80}},
	} {
		got := h.store.Resolve(netip.MustParseAddrPort(c.dst))
		if got != c.want {
			t.Errorf("%s: Resolve(%s) = %+v, want %+v", c.name, c.dst, got, c.want)
		}
	}
	if w := h.store.WorkloadAt(netip.MustParseAddr(a.ip)); w.GetName() != "echo-1" {
		t.Errorf("WorkloadAt(%s) = %v", a.ip, w)
	}
	if w := h.store.WorkloadAt(netip.MustParseAddr("10.1.2.3")); w != nil {
		t.Errorf("WorkloadAt(unknown) = %v", w)
	}

	// Without waypoint-for workload|all the pod names no waypoint.
	h2 := newHarness(t, mesh([]pod{a.pod("echo")}), harnessOpts{})
	if got := h2.store.Resolve(netip.MustParseAddrPort(a.ip + ":80")); got.Kind != TargetWorkload || got.Waypoint != "" {
		t.Errorf("service-only waypoint: pod resolves to %+v, want a workload without waypoint", got)
	}
}

// TestWorkloadDestination: traffic addressed to a pod goes to that pod
// (not to the Service's route table), under the Workload's policies, and
// the dialer sees the request's trace context and connection meta.
func TestWorkloadDestination(t *testing.T) {
	a := startBackend(t, "echo-1")
	b := startBackend(t, "echo-2")
	// One policy on the pod's Service (enforced by the waypoint, listed in
	// the L7Service) and one on its namespace (listed in the Workload).
	policy := `apiVersion: security.warren.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop, generation: 1}
spec:
  targetRefs: [{group: "", kind: Service, name: echo}]
  action: DENY
  rules:
  - to: {paths: ["/admin*"]}
---
apiVersion: security.warren.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: ns-deny, namespace: shop, generation: 1}
spec:
  action: DENY
  rules:
  - from: {namespaces: [client]}
    to: {paths: ["/ns-deny*"]}
`
	// The Service routes everything to echo-v2: workload traffic must
	// ignore that.
	route := httpRoute("all-v2", "shop", "  - backendRefs: [{name: echo-v2, port: 80}]\n")
	d := &recordingDialer{}
	h := newHarness(t, meshForAll([]pod{a.pod("echo"), b.pod("echo-v2")}, policy, route),
		harnessOpts{engine: func(o *Options) { o.Dialer = d }})
	tgt := h.store.Resolve(netip.MustParseAddrPort(net.JoinHostPort(a.ip, strconv.Itoa(a.port))))
	m := tgt.Meta()
	m.SourceIdentity, m.SourceNamespace = "spiffe://cluster.local/ns/client/sa/sleep", "client"
	m.Traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	addr := h.listenMeta(m)

	r := h.get(addr, "/hello", nil)
	if r.status != 200 || r.seen.Backend != "echo-1" {
		t.Fatalf("workload traffic → %d from %q, want 200 from echo-1 (body %s)", r.status, r.seen.Backend, r.body)
	}
	tp := r.seen.Header["Traceparent"]
	if len(tp) != 1 || !strings.HasPrefix(tp[0], "00-0af7651916cd43dd8448eb211c80319c-") || strings.Contains(tp[0], "b7ad6b7169203331") {
		t.Errorf("backend traceparent %v: want the tunnel's trace continued with the waypoint's span", tp)
	}
	if r := h.get(addr, "/admin/x", nil); r.status != 403 {
		t.Errorf("DENY of the pod's Service on workload traffic: got %d, want 403", r.status)
	}
	if r := h.get(addr, "/ns-deny", nil); r.status != 403 {
		t.Errorf("DENY of the pod's namespace on workload traffic: got %d, want 403", r.status)
	}
	if got := workloadPolicies(h.store.load(), h.store.Config().Workloads["shop/echo-1"]); strings.Join(got, ",") != "shop/no-admin,shop/ns-deny" {
		t.Errorf("policies of pod echo-1: %v", got)
	}
	// A request with its own trace keeps it.
	own := "00-11111111111111111111111111111111-2222222222222222-01"
	if r := h.get(addr, "/own", map[string]string{"Traceparent": own}); len(r.seen.Header["Traceparent"]) != 1 ||
		!strings.HasPrefix(r.seen.Header["Traceparent"][0], "00-11111111111111111111111111111111-") {
		t.Errorf("request's own trace: backend saw %v", r.seen.Header["Traceparent"])
	}
	dials := d.seen()
	if len(dials) == 0 {
		t.Fatal("no upstream dial recorded")
	}
	first := dials[0]
	if first.ep.Addr != net.JoinHostPort(a.ip, strconv.Itoa(a.port)) || first.ep.Identity != "spiffe://cluster.local/ns/shop/sa/echo" || !first.ep.HBONE {
		t.Errorf("dialed endpoint %+v: want the pod itself, its identity, over HBONE", first.ep)
	}
	if first.traceparent != tp[0] {
		t.Errorf("dial context traceparent %q, want the request's outgoing %q", first.traceparent, tp[0])
	}
	if first.meta == nil || first.meta.Workload != "shop/echo-1" || first.meta.SourceIdentity != m.SourceIdentity {
		t.Errorf("dial context meta %+v", first.meta)
	}
	if n := h.counter("istio_requests_total", map[string]string{"destination_service": "unknown", "destination_service_namespace": "shop",
		"destination_workload": "echo", "response_code": "200"}); n != 2 {
		t.Errorf("istio_requests_total for the workload destination = %v, want 2", n)
	}

	// Opaque TCP to the pod: the DENY rule's path condition cannot be
	// checked at L4, so it denies every connection (fail closed).
	m.Protocol = 1 // TCP
	if body := opaqueGet(t, h.listenMeta(m)); body != "" {
		t.Errorf("TCP under a DENY with L7 conditions got an answer: %q", body)
	}
	// Without the policy it passes, and the dialer gets the meta (source,
	// tunnel trace) in its context.
	d2 := &recordingDialer{}
	h2 := newHarness(t, meshForAll([]pod{a.pod("echo")}), harnessOpts{engine: func(o *Options) { o.Dialer = d2 }})
	if body := opaqueGet(t, h2.listenMeta(m)); !strings.Contains(body, `"backend":"echo-1"`) {
		t.Fatalf("TCP passthrough to the pod: %q", body)
	}
	if ds := d2.seen(); len(ds) != 1 || ds[0].meta == nil || ds[0].meta.Traceparent != m.Traceparent || ds[0].traceparent != "" {
		t.Errorf("TCP dial contexts %+v: want one, with the tunnel's trace in its meta only", ds)
	}

	// A workload that is gone: 503, no configuration.
	gone := m
	gone.Protocol, gone.Workload = 0, "shop/nope"
	if r := h.get(h.listenMeta(gone), "/", nil); r.status != 503 {
		t.Errorf("unknown workload: %d, want 503", r.status)
	}
}

// opaqueGet sends an HTTP/1.0 request as opaque bytes and returns the
// whole answer.
func opaqueGet(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /tcp HTTP/1.0\r\n\r\n")
	body, _ := io.ReadAll(c)
	return string(body)
}
