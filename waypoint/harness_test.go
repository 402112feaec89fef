package waypoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/file"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// Test fixtures: a mesh in YAML (namespaces shop and client, waypoint
// shop/waypoint, Services echo and echo-v2 on port 80 and grpc on 7070)
// whose pods are real servers on loopback addresses, translated by
// istiod-lite's translator exactly as the control plane would.

const echoKey = "shop/echo.shop.svc.cluster.local"
const grpcKey = "shop/grpc.shop.svc.cluster.local"

const meshBase = `
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
metadata: {name: waypoint, namespace: shop, generation: 1}
spec:
  gatewayClassName: warren-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata: {name: waypoint, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: mesh, port: 15008, targetPort: 15008}]
  selector: {gateway.networking.k8s.io/gateway-name: waypoint}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: waypoint, namespace: shop}
spec:
  selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: waypoint}}
  template:
    metadata: {labels: {gateway.networking.k8s.io/gateway-name: waypoint}}
    spec: {containers: [{name: waypoint, image: warren/waypoint}]}
status: {replicas: 1, readyReplicas: 1, conditions: [{type: Available, status: "True"}]}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
  selector: {app: echo}
---
apiVersion: v1
kind: Service
metadata: {name: echo-v2, namespace: shop}
spec:
  clusterIP: 10.96.0.21
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
  selector: {app: echo-v2}
---
apiVersion: v1
kind: Service
metadata: {name: grpc, namespace: shop}
spec:
  clusterIP: 10.96.0.22
  ports: [{name: grpc, port: 7070, targetPort: grpc, appProtocol: grpc}]
  selector: {app: grpc}
`

// pod is one backend pod of the fixture mesh.
type pod struct {
	name, app, ip string
	port          int
	portName      string
	ns            string
	sa            string
	notReady      bool
}

func (p pod) yaml() string {
	ns, sa, pn, ready := p.ns, p.sa, p.portName, "True"
	if ns == "" {
		ns = "shop"
	}
	if sa == "" {
		sa = p.app
	}
	if pn == "" {
		pn = "http"
	}
	if p.notReady {
		ready = "False"
	}
	return fmt.Sprintf(`
---
apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {app: %s}}
spec:
  serviceAccountName: %s
  nodeName: node-a
  containers: [{name: app, image: app, ports: [{name: %s, containerPort: %d}]}]
status:
  phase: Running
  podIP: %s
  podIPs: [{ip: %s}]
  conditions: [{type: Ready, status: "%s"}]
`, p.name, ns, p.app, sa, pn, p.port, p.ip, p.ip, ready)
}

// translateYAML runs istiod-lite's file source and translator over a
// YAML document and returns the waypoint Config it yields.
func translateYAML(t testing.TB, doc string) Config {
	t.Helper()
	snap, err := file.Parse("test.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	out := translate.Translate(model.NewIndex(snap))
	return Config{L7Services: out.L7Services, Services: out.Services, Workloads: out.Workloads, Authorizations: out.Authorizations}
}

// seen is what an echo backend saw.
type seen struct {
	Backend string              `json:"backend"`
	Method  string              `json:"method"`
	Host    string              `json:"host"`
	Path    string              `json:"path"`
	Query   string              `json:"query"`
	Header  map[string][]string `json:"header"`
	Body    string              `json:"body"`
	Proto   string              `json:"proto"`
}

// backend is a real HTTP server on a loopback address.
type backend struct {
	name string
	ip   string
	port int
	srv  *http.Server
	hits atomic.Int64
	// handle, if set, answers instead of the echo.
	handle atomic.Pointer[http.HandlerFunc]
	mu     sync.Mutex
	reqs   []seen
}

var nextIP atomic.Int32

// loopbackIP returns a fresh 127.0.x.y address for a test pod.
func loopbackIP() string {
	n := nextIP.Add(1)
	return fmt.Sprintf("127.0.%d.%d", 10+n/250, 1+n%250)
}

func startBackend(t testing.TB, name string) *backend {
	t.Helper()
	b := &backend{name: name, ip: loopbackIP()}
	ln, err := net.Listen("tcp", b.ip+":0")
	if err != nil {
		t.Fatalf("listen %s: %v", b.ip, err)
	}
	b.port = ln.Addr().(*net.TCPAddr).Port
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	b.srv = &http.Server{Protocols: p, Handler: http.HandlerFunc(b.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

func (b *backend) setHandler(h http.HandlerFunc) { b.handle.Store(&h) }

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	b.hits.Add(1)
	body, _ := io.ReadAll(r.Body)
	s := seen{Backend: b.name, Method: r.Method, Host: r.Host, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
		Header: r.Header, Body: string(body), Proto: r.Proto}
	b.mu.Lock()
	b.reqs = append(b.reqs, s)
	b.mu.Unlock()
	if h := b.handle.Load(); h != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
		(*h)(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Backend", b.name)
	_ = json.NewEncoder(w).Encode(s)
}

func (b *backend) requests() []seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seen(nil), b.reqs...)
}

func (b *backend) pod(app string) pod {
	return pod{name: b.name, app: app, ip: b.ip, port: b.port}
}

// syncBuffer is a goroutine-safe access log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness is an Engine serving the fixture mesh on plaintext listeners.
type harness struct {
	t     testing.TB
	eng   *Engine
	store *Store
	reg   *prometheus.Registry
	log   *syncBuffer
	c     *http.Client
}

type harnessOpts struct {
	store  StoreOptions
	engine func(*Options)
}

func newHarness(t testing.TB, doc string, o harnessOpts) *harness {
	t.Helper()
	h := &harness{t: t, reg: prometheus.NewRegistry(), log: &syncBuffer{}}
	h.store = NewStore(o.store)
	if err := h.store.Replace(translateYAML(t, doc)); err != nil {
		t.Fatalf("config: %v", err)
	}
	opts := Options{Store: h.store, Registerer: h.reg, AccessLog: h.log}
	if o.engine != nil {
		o.engine(&opts)
	}
	eng, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.eng = eng
	t.Cleanup(func() { _ = eng.Close() })
	h.c = &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	t.Cleanup(h.c.CloseIdleConnections)
	return h
}

// listen starts a plaintext listener for dest and returns its address.
func (h *harness) listen(dest Destination) string {
	h.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	go func() { _ = h.eng.ServePlaintext(ln, dest) }()
	return ln.Addr().String()
}

// echoDest is the echo Service port 80, from namespace client.
func echoDest() Destination {
	return Destination{Service: echoKey, Port: 80, SourceNamespace: "client", SourceIdentity: "spiffe://cluster.local/ns/client/sa/sleep"}
}

type reply struct {
	status int
	header http.Header
	body   string
	seen   seen
}

// do sends a request to addr and decodes an echo reply when there is one.
func (h *harness) do(addr, method, target string, hdr map[string]string, body string) reply {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+addr+target, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range hdr {
		if strings.EqualFold(k, "host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := h.c.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	rep := reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(b, &rep.seen)
	}
	return rep
}

func (h *harness) get(addr, target string, hdr map[string]string) reply {
	h.t.Helper()
	return h.do(addr, http.MethodGet, target, hdr, "")
}

// counter sums a metric's samples whose labels include want.
func (h *harness) counter(name string, want map[string]string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, want) {
				switch {
				case m.GetCounter() != nil:
					sum += m.GetCounter().GetValue()
				case m.GetHistogram() != nil:
					sum += float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// eventually polls f until it is true or the deadline passes.
func eventually(t testing.TB, d time.Duration, f func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if f() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return f()
}

// mesh renders the fixture with pods and extra documents.
func mesh(pods []pod, extra ...string) string {
	var b strings.Builder
	b.WriteString(meshBase)
	for _, p := range pods {
		b.WriteString(p.yaml())
	}
	for _, e := range extra {
		b.WriteString("\n---\n")
		b.WriteString(e)
	}
	return b.String()
}

// httpRoute renders a producer HTTPRoute on Service echo with the given
// rules (YAML list items, indented by 2).
func httpRoute(name, ns, rules string) string {
	parent := `{group: "", kind: Service, name: echo}`
	if ns != "shop" {
		parent = `{group: "", kind: Service, name: echo, namespace: shop}`
	}
	return fmt.Sprintf(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: %s, namespace: %s, generation: 1, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [%s]
  rules:
%s`, name, ns, parent, rules)
}
