package tunnel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/file"
	"github.com/warren-mesh/warren/istiod-lite/translate"
	"github.com/warren-mesh/warren/waypoint"
	"github.com/warren-mesh/warren/waypoint/listener"
	"github.com/warren-mesh/warren/waypoint/upstream"
	"github.com/warren-mesh/warren/ztunnel/hbone"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

const meshDoc = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: warren-waypoint}
spec: {controllerName: warren.io/waypoint-controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {warren.io/dataplane-mode: ambient, warren.io/use-waypoint: waypoint}}
---
apiVersion: v1
kind: Namespace
metadata: {name: client, labels: {warren.io/dataplane-mode: ambient}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop, labels: {warren.io/waypoint-for: all}}
spec:
  gatewayClassName: warren-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata: {name: waypoint, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: mesh, port: 15008}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 80, targetPort: %d, appProtocol: http}]
  selector: {app: echo}
---
apiVersion: v1
kind: Pod
metadata: {name: echo-0, namespace: shop, labels: {app: echo}}
spec:
  serviceAccountName: echo
  containers: [{name: echo, image: echo}]
status: {phase: Running, podIP: %s, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: curl-0, namespace: client, labels: {app: curl}}
spec:
  serviceAccountName: curl
  containers: [{name: curl, image: curl}]
status: {phase: Running, podIP: 10.244.9.9, conditions: [{type: Ready, status: "True"}]}
`

type env struct {
	ca       *certs.CA
	store    *waypoint.Store
	in       *Inbound
	reg      *prometheus.Registry
	log      *syncBuf
	addr     netip.AddrPort // the HBONE listener
	podIP    string
	appPort  int
	notReady error
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newCA(t *testing.T) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA(certs.Options{TrustDomain: td, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func svid(t *testing.T, ca *certs.CA, id string) *x509svid.SVID {
	t.Helper()
	s, err := ca.NewSVID(spiffeid.RequireFromString(id), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newEnv serves an Inbound for shop/waypoint (waypoint-for for) over a
// real HBONE listener, in front of an engine whose pod is a real HTTP
// server on loopback (reached over plain TCP: the upstream is not what
// this tests).
func newEnv(t *testing.T, gateway, waypointFor string) *env {
	t.Helper()
	e := &env{ca: newCA(t), reg: prometheus.NewRegistry(), log: &syncBuf{}, podIP: "127.0.0.1"}
	app, err := net.Listen("tcp", e.podIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	e.appPort = app.Addr().(*net.TCPAddr).Port
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	})}
	go srv.Serve(app)
	t.Cleanup(func() { srv.Close() })

	snap, err := file.Parse("mesh.yaml", []byte(fmt.Sprintf(meshDoc, e.appPort, e.podIP)))
	if err != nil {
		t.Fatal(err)
	}
	out := translate.Translate(model.NewIndex(snap))
	e.store = waypoint.NewStore(waypoint.StoreOptions{})
	if err := e.store.Replace(waypoint.Config{L7Services: out.L7Services, Services: out.Services, Workloads: out.Workloads, Authorizations: out.Authorizations}); err != nil {
		t.Fatal(err)
	}
	eng, err := waypoint.New(waypoint.Options{Store: e.store, AccessLog: e.log, Registerer: e.reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	e.in, err = NewInbound(InboundOptions{Engine: eng, Store: e.store, Gateway: gateway, For: waypointFor, Registerer: e.reg,
		Ready: func() error { return e.notReady }})
	if err != nil {
		t.Fatal(err)
	}
	bundle := certs.NewTrustBundle(td, e.ca.Bundle().Roots()...)
	hs, err := hbone.NewServer(hbone.ServerOptions{
		TLSConfig: certs.HBONEServerConfig(svid(t, e.ca, "spiffe://cluster.local/ns/shop/sa/waypoint"), bundle, certs.AuthorizeAny(), certs.TLSOptions{}),
		Handler:   e.in,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().(*net.TCPAddr).AddrPort()
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return e
}

// connect opens a tunnel as id to dst and, if it is accepted, sends a
// GET and returns the answer's first line.
func (e *env) connect(t *testing.T, id, dst string, fwd string) (int, string) {
	t.Helper()
	pool := hbone.NewPool(hbone.PoolOptions{})
	defer pool.Close()
	req := hbone.DialRequest{Addr: e.addr, Authority: netip.MustParseAddrPort(dst), Source: svid(t, e.ca, id),
		Bundle: certs.NewTrustBundle(td, e.ca.Bundle().Roots()...), ServerID: spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/waypoint")}
	if fwd != "" {
		req.ForwardedFor = netip.MustParseAddr(fwd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := pool.Dial(ctx, req)
	var se *hbone.StatusError
	if errors.As(err, &se) {
		return se.Code, ""
	}
	if err != nil {
		t.Fatalf("CONNECT %s: %v", dst, err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(s, "GET /x HTTP/1.1\r\nHost: echo\r\nConnection: close\r\n\r\n")
	b, _ := io.ReadAll(s)
	line, _, _ := strings.Cut(string(b), "\r\n")
	return 200, line
}

func TestInboundDestinations(t *testing.T) {
	const client = "spiffe://cluster.local/ns/client/sa/curl"
	for _, c := range []struct {
		name, gateway, waypointFor string
		vip, pod                   int // CONNECT status for the VIP and for the pod
	}{
		{"service", "shop/waypoint", ForService, 200, 404},
		{"workload", "shop/waypoint", ForWorkload, 404, 200},
		{"all", "shop/waypoint", ForAll, 200, 200},
		{"none", "shop/waypoint", ForNone, 404, 404},
		{"another waypoint's config", "shop/other", ForAll, 404, 404},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, c.gateway, c.waypointFor)
			code, line := e.connect(t, client, "10.96.0.20:80", "")
			if code != c.vip || (code == 200 && line != "HTTP/1.1 200 OK") {
				t.Errorf("VIP: %d %q, want %d", code, line, c.vip)
			}
			code, line = e.connect(t, client, fmt.Sprintf("%s:%d", e.podIP, e.appPort), "")
			if code != c.pod || (code == 200 && line != "HTTP/1.1 200 OK") {
				t.Errorf("pod: %d %q, want %d", code, line, c.pod)
			}
			// The handler returns just after the client read the end.
			deadline := time.Now().Add(10 * time.Second)
			for e.in.Stats().Active != 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if st := e.in.Stats(); st.Active != 0 || st.Accepted+st.Refused != 2 || st.Accepted != ok200(c.vip)+ok200(c.pod) {
				t.Errorf("stats %+v", st)
			}
		})
	}

	e := newEnv(t, "shop/waypoint", ForAll)
	for _, c := range []struct {
		dst    string
		code   int
		result string
	}{
		{"10.96.7.7:80", 404, ResultUnknownDestination},
		{"10.96.0.20:81", 404, ResultPortNotServed},
		{"10.96.0.10:15008", 404, ResultUnknownDestination}, // a Service without routes here
	} {
		if code, _ := e.connect(t, client, c.dst, ""); code != c.code {
			t.Errorf("CONNECT %s: %d, want %d", c.dst, code, c.code)
		}
		if got := e.in.Stats().LastRefusal; got != c.result {
			t.Errorf("CONNECT %s refused as %q, want %q", c.dst, got, c.result)
		}
	}
	e.notReady = errors.New("no configuration yet")
	if code, _ := e.connect(t, client, "10.96.0.20:80", ""); code != 503 {
		t.Errorf("not ready: %d, want 503", code)
	}
	if v := counterValue(e.in.streams.WithLabelValues(ResultNotReady)); v != 1 {
		t.Errorf("not_ready count %v", v)
	}
	if v := counterValue(e.in.streams.WithLabelValues(ResultUnknownDestination)); v != 2 {
		t.Errorf("unknown_destination count %v", v)
	}
}

// TestInboundSource: the peer's identity and namespace reach the engine;
// a Forwarded address is used only when a workload of the peer's identity
// has it.
func TestInboundSource(t *testing.T) {
	e := newEnv(t, "shop/waypoint", ForService)
	const curl = "spiffe://cluster.local/ns/client/sa/curl"
	for _, c := range []struct {
		name, id, fwd, wantSrc string
		untrusted              float64
	}{
		{"no Forwarded", curl, "", `"source_address":"127.0.0.1:`, 0},
		{"Forwarded names the peer's own pod", curl, "10.244.9.9", `"source_address":"10.244.9.9:`, 0},
		{"Forwarded names someone else's pod", "spiffe://cluster.local/ns/client/sa/other", "10.244.9.9", `"source_address":"127.0.0.1:`, 1},
	} {
		if code, _ := e.connect(t, c.id, "10.96.0.20:80", c.fwd); code != 200 {
			t.Fatalf("%s: %d", c.name, code)
		}
		lines := strings.Split(strings.TrimSpace(e.log.String()), "\n")
		last := lines[len(lines)-1]
		if !strings.Contains(last, c.wantSrc) || !strings.Contains(last, `"source_identity":"`+c.id+`"`) || !strings.Contains(last, `"source_namespace":"client"`) {
			t.Errorf("%s: access log %s: want %s and the peer", c.name, last, c.wantSrc)
		}
		if v := counterValue(e.in.forwardedUntrusted); v != c.untrusted {
			t.Errorf("%s: untrusted Forwarded count %v, want %v", c.name, v, c.untrusted)
		}
	}
}

// standIn records CONNECTs and answers as id on 127.0.0.1.
type standIn struct {
	mu   sync.Mutex
	hdrs []http.Header
	port uint16
}

func startStandIn(t *testing.T, ca *certs.CA, id string) *standIn {
	t.Helper()
	s := &standIn{}
	hs, err := hbone.NewServer(hbone.ServerOptions{
		TLSConfig: certs.HBONEServerConfig(svid(t, ca, id), certs.NewTrustBundle(td, ca.Bundle().Roots()...), certs.AuthorizeAny(), certs.TLSOptions{}),
		Handler: hbone.HandlerFunc(func(r *hbone.Request) {
			s.mu.Lock()
			s.hdrs = append(s.hdrs, r.Header.Clone())
			s.mu.Unlock()
			st, err := r.Accept()
			if err == nil {
				io.Copy(io.Discard, st)
			}
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = uint16(ln.Addr().(*net.TCPAddr).Port)
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return s
}

func TestDialer(t *testing.T) {
	ca := newCA(t)
	const podID = "spiffe://cluster.local/ns/shop/sa/echo"
	s := startStandIn(t, ca, podID)
	pool := hbone.NewPool(hbone.PoolOptions{})
	defer pool.Close()
	d, err := NewDialer(DialerOptions{Pool: pool, Source: svid(t, ca, "spiffe://cluster.local/ns/shop/sa/waypoint"),
		Bundle: certs.NewTrustBundle(td, ca.Bundle().Roots()...), Port: s.port, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ep := upstream.Endpoint{Addr: "127.0.0.1:8080", Identity: podID, HBONE: true}
	const t1 = "00-11111111111111111111111111111111-1111111111111111-01"
	const t2 = "00-22222222222222222222222222222222-2222222222222222-01"
	m := &listener.Meta{SourceAddr: "10.1.2.3:5555", Traceparent: t1, Baggage: "k=v"}
	for _, c := range []struct {
		name string
		ctx  context.Context
		want http.Header
	}{
		{"attempt trace wins", upstream.WithTraceparent(listener.WithMeta(context.Background(), m), t2),
			http.Header{"Traceparent": {t2}, "Baggage": {"k=v"}, "Forwarded": {"for=10.1.2.3"}}},
		{"the tunnel's trace", listener.WithMeta(context.Background(), m),
			http.Header{"Traceparent": {t1}, "Baggage": {"k=v"}, "Forwarded": {"for=10.1.2.3"}}},
		{"nothing to pass on", context.Background(), http.Header{}},
	} {
		c1, err := d.Dial(c.ctx, ep)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		c1.Close()
		s.mu.Lock()
		got := s.hdrs[len(s.hdrs)-1]
		s.mu.Unlock()
		for k := range got {
			if _, ok := c.want[k]; !ok {
				t.Errorf("%s: unexpected CONNECT header %s: %v", c.name, k, got[k])
			}
		}
		for k, v := range c.want {
			if got.Get(k) != v[0] {
				t.Errorf("%s: CONNECT %s = %q, want %q", c.name, k, got.Get(k), v[0])
			}
		}
	}
	if st := pool.Stats(); st.Connections != 1 {
		t.Errorf("three dials to one ztunnel used %d connections", st.Connections)
	}
	for _, c := range []struct {
		name string
		ep   upstream.Endpoint
		want string
	}{
		{"wrong identity", upstream.Endpoint{Addr: "127.0.0.1:8080", Identity: "spiffe://cluster.local/ns/shop/sa/other"}, "identity mismatch"},
		{"no identity", upstream.Endpoint{Addr: "127.0.0.1:8080"}, "no identity"},
		{"bad identity", upstream.Endpoint{Addr: "127.0.0.1:8080", Identity: "echo"}, "endpoint identity"},
		{"bad address", upstream.Endpoint{Addr: "echo:8080", Identity: podID}, "endpoint address"},
	} {
		if _, err := d.Dial(context.Background(), c.ep); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error mentioning %q", c.name, err, c.want)
		}
	}
	if _, err := NewDialer(DialerOptions{}); err == nil {
		t.Error("NewDialer without a pool")
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

func ok200(code int) uint64 {
	if code == 200 {
		return 1
	}
	return 0
}
