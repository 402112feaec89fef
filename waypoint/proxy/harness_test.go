package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/istiod-lite/ca"
	"github.com/warren-mesh/warren/istiod-lite/controller"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/file"
	"github.com/warren-mesh/warren/istiod-lite/xds"
	"github.com/warren-mesh/warren/ztunnel/hbone"
)

// The test mesh: namespace shop uses waypoint shop/waypoint (waypoint-for
// all); Service echo (10.96.0.20:80) splits 90/10 over echo-v1/echo-v2,
// sends /bad to Service bad (whose stand-in ztunnel presents the wrong
// identity) and /legacy to a pod outside the mesh; namespace client-a has
// a consumer route sending all of echo to echo-v2 with a header. Pods are
// loopback addresses 127.N.M.x unique to the test: every mesh pod gets a
// stand-in for its ztunnel's inbound (an hbone.Server answering as the
// pod's identity) in front of a real HTTP server.
const meshTemplate = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: warren-waypoint}
spec: {controllerName: warren.io/waypoint-controller}
---
apiVersion: v1
kind: Node
metadata: {name: node-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {warren.io/dataplane-mode: ambient, warren.io/use-waypoint: waypoint}}
---
apiVersion: v1
kind: Namespace
metadata: {name: client-a, labels: {warren.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: client-b, labels: {warren.io/dataplane-mode: ambient}}
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
  selector: {gateway.networking.k8s.io/gateway-name: waypoint}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
  selector: {app: echo}
---
apiVersion: v1
kind: Service
metadata: {name: echo-v1, namespace: shop}
spec:
  clusterIP: 10.96.0.21
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
  selector: {app: echo, version: v1}
---
apiVersion: v1
kind: Service
metadata: {name: echo-v2, namespace: shop}
spec:
  clusterIP: 10.96.0.22
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
  selector: {app: echo, version: v2}
---
apiVersion: v1
kind: Service
metadata: {name: bad, namespace: shop}
spec:
  clusterIP: 10.96.0.23
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
  selector: {app: bad}
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: shop}
spec:
  clusterIP: 10.96.0.24
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
  selector: {app: legacy}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo-split, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /bad}}]
    backendRefs: [{name: bad, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /legacy}}]
    backendRefs: [{name: legacy, port: 80}]
  - backendRefs:
    - {name: echo-v1, port: 80, weight: V1WEIGHT}
    - {name: echo-v2, port: 80, weight: V2WEIGHT}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo-consumer, namespace: client-a, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, namespace: shop, port: 80}]
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: x-consumer, value: client-a}]}
    backendRefs: [{name: echo-v2, namespace: shop, port: 80}]
---
apiVersion: security.warren.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop}
spec:
  targetRefs: [{group: "", kind: Service, name: echo-v1}]
  action: DENY
  rules:
  - to: {paths: ["/admin*"]}
`

func podYAML(name, ns, sa, ip string, labels string) string {
	return fmt.Sprintf(`---
apiVersion: v1
kind: Pod
metadata: {name: %s, namespace: %s, labels: {%s}}
spec:
  serviceAccountName: %s
  nodeName: node-a
  containers: [{name: app, image: app, ports: [{containerPort: 8080}]}]
status:
  phase: Running
  podIP: %s
  conditions: [{type: Ready, status: "True"}]
`, name, ns, labels, sa, ip)
}

const (
	trustDomain = "cluster.local"
	echoKey     = "shop/echo.shop.svc.cluster.local"
	echoVIP     = "10.96.0.20:80"
	wpToken     = "waypoint-shop-token-0123456789"
)

var (
	td         = spiffeid.RequireTrustDomainFromString(trustDomain)
	waypointID = spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/waypoint")
	echoID     = spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/echo")
	otherID    = spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/someone-else")
	clientAID  = spiffeid.RequireFromString("spiffe://cluster.local/ns/client-a/sa/curl")
	clientBID  = spiffeid.RequireFromString("spiffe://cluster.local/ns/client-b/sa/curl")
)

// net24 is a loopback /24 of the test's own: 127.N.M.0.
type net24 string

func newNet24() net24 {
	return net24(fmt.Sprintf("127.%d.%d.", 100+rand.IntN(150), 1+rand.IntN(250)))
}

func (n net24) ip(host int) string { return fmt.Sprintf("%s%d", n, host) }

// Host numbers of the mesh's pods.
const (
	hostWaypoint = 2
	hostV1       = 11
	hostV2       = 12
	hostBad      = 13
	hostLegacy   = 14
	hostClientA  = 20
	hostClientB  = 21
)

// meshYAML renders the mesh for a network with the given split.
func meshYAML(n net24, v1, v2 int) string {
	doc := strings.NewReplacer("V1WEIGHT", fmt.Sprint(v1), "V2WEIGHT", fmt.Sprint(v2)).Replace(meshTemplate)
	return doc + podYAML("echo-v1-0", "shop", "echo", n.ip(hostV1), "app: echo, version: v1, app.kubernetes.io/name: echo-v1") +
		podYAML("echo-v2-0", "shop", "echo", n.ip(hostV2), "app: echo, version: v2, app.kubernetes.io/name: echo-v2") +
		podYAML("bad-0", "shop", "bad", n.ip(hostBad), "app: bad") +
		podYAML("legacy-0", "shop", "legacy", n.ip(hostLegacy), "app: legacy, warren.io/dataplane-mode: none") +
		podYAML("curl-a", "client-a", "curl", n.ip(hostClientA), "app: curl-a") +
		podYAML("curl-b", "client-b", "curl", n.ip(hostClientB), "app: curl-b")
}

// syncBuf is a goroutine-safe buffer.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// controlPlane is istiod-lite assembled from its packages as file mode
// runs it: a CA, the certificate service and delta xDS on one TLS gRPC
// port authenticated by bootstrap tokens, and the translation loop over
// a YAML directory.
type controlPlane struct {
	addr      string
	ca        *certs.CA
	xds       *xds.Server
	src       *file.Source
	dir       string
	rootFile  string
	tokenFile string
}

func startControlPlane(t testing.TB, mesh string) *controlPlane {
	t.Helper()
	dir := t.TempDir()
	cp := &controlPlane{dir: filepath.Join(dir, "config"), rootFile: filepath.Join(dir, "root-cert.pem"), tokenFile: filepath.Join(dir, "token")}
	if err := os.Mkdir(cp.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cp.writeMesh(t, mesh)
	if err := os.WriteFile(cp.tokenFile, []byte(wpToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	authority, err := certs.NewCA(certs.Options{TrustDomain: td, DataDir: filepath.Join(dir, "ca")})
	if err != nil {
		t.Fatal(err)
	}
	cp.ca = authority
	auth, err := ca.NewStaticAuthenticator(td, []ca.BootstrapToken{{Token: wpToken, ServiceAccount: "shop/waypoint", Node: "node-a"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if cp.xds, err = xds.NewServer(xds.Options{Authenticator: auth}); err != nil {
		t.Fatal(err)
	}
	caSrv, err := ca.NewServer(ca.Options{CA: authority, Authenticator: auth})
	if err != nil {
		t.Fatal(err)
	}
	serverID, _ := certs.WorkloadID(td, "warren-system", "istiod-lite")
	svc, err := ca.NewService(authority, caSrv, ca.ServiceOptions{Addr: "127.0.0.1:0", ServerID: serverID,
		Register: []func(grpc.ServiceRegistrar){cp.xds.Register}, GRPCOptions: xds.ServerOptions()})
	if err != nil {
		t.Fatal(err)
	}
	if cp.src, err = file.New(file.Options{Dir: cp.dir}); err != nil {
		t.Fatal(err)
	}
	ctrl, err := controller.New(controller.Options{Source: cp.src, Bundle: authority.Bundle(), XDS: cp.xds,
		Mesh: model.MeshConfig{TrustDomain: trustDomain, ClusterDomain: "cluster.local", SystemNamespace: "warren-system"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{svc.Start, ctrl.Start} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(ctx) }()
	}
	t.Cleanup(func() { cancel(); cp.xds.Close(); wg.Wait() })
	select {
	case a := <-svc.Listening():
		cp.addr = a.String()
	case <-time.After(30 * time.Second):
		t.Fatal("control plane did not start")
	}
	select {
	case <-ctrl.Synced():
	case <-time.After(30 * time.Second):
		t.Fatal("control plane did not publish")
	}
	return cp
}

func (cp *controlPlane) writeMesh(t testing.TB, mesh string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(cp.dir, "mesh.yaml"), []byte(mesh), 0o644); err != nil {
		t.Fatal(err)
	}
}

// edit replaces the mesh and makes the file source read it now.
func (cp *controlPlane) edit(t testing.TB, mesh string) {
	t.Helper()
	cp.writeMesh(t, mesh)
	if err := cp.src.Reload(); err != nil {
		t.Fatal(err)
	}
}

// writeRoots publishes the root certificate file the waypoint waits for.
func (cp *controlPlane) writeRoots(t testing.TB) {
	t.Helper()
	if err := os.WriteFile(cp.rootFile, cp.ca.Bundle().PEM(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (cp *controlPlane) svid(t testing.TB, id spiffeid.ID) *x509svid.SVID {
	t.Helper()
	s, err := cp.ca.NewSVID(id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (cp *controlPlane) bundle() *certs.TrustBundle {
	return certs.NewTrustBundle(td, cp.ca.Bundle().Roots()...)
}

// echoReply is what a pod's app answers.
type echoReply struct {
	Pod    string              `json:"pod"`
	Path   string              `json:"path"`
	Remote string              `json:"remote"`
	Header map[string][]string `json:"header"`
}

// app is a pod's HTTP server on <ip>:8080.
type app struct {
	name    string
	release chan struct{} // /slow waits on it
	started chan struct{} // a /slow request arrived
}

func startApp(t testing.TB, name, ip string) *app {
	t.Helper()
	a := &app{name: name, release: make(chan struct{}), started: make(chan struct{}, 16)}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "8080"))
	if err != nil {
		t.Fatalf("app %s: %v", name, err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			a.started <- struct{}{}
			<-a.release
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echoReply{Pod: a.name, Path: r.URL.Path, Remote: r.RemoteAddr, Header: r.Header})
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return a
}

// connectSeen is one CONNECT a stand-in ztunnel received.
type connectSeen struct {
	peer      spiffeid.ID
	authority netip.AddrPort
	header    http.Header
}

// standIn plays the destination pod's ztunnel inbound: HBONE on
// <pod ip>:<port>, answering as id, splicing to the authority.
type standIn struct {
	mu   sync.Mutex
	seen []connectSeen
	srv  *hbone.Server
}

func startStandIn(t testing.TB, cp *controlPlane, ln net.Listener, id spiffeid.ID) *standIn {
	t.Helper()
	s, err := newStandIn(cp.svid(t, id), cp.bundle(), ln)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

// newStandIn serves ln until s.srv is closed.
func newStandIn(svid *x509svid.SVID, bundle *certs.TrustBundle, ln net.Listener) (*standIn, error) {
	s := &standIn{}
	srv, err := hbone.NewServer(hbone.ServerOptions{
		TLSConfig: certs.HBONEServerConfig(svid, bundle, certs.AuthorizeAny(), certs.TLSOptions{}),
		Handler: hbone.HandlerFunc(func(r *hbone.Request) {
			s.mu.Lock()
			s.seen = append(s.seen, connectSeen{peer: r.Peer, authority: r.Authority, header: r.Header.Clone()})
			s.mu.Unlock()
			app, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(r.Context(), "tcp", r.Authority.String())
			if err != nil {
				_ = r.Reject(http.StatusServiceUnavailable)
				return
			}
			st, err := r.Accept()
			if err != nil {
				app.Close()
				return
			}
			_, _, _ = hbone.Splice(st, app)
		}),
	})
	if err != nil {
		return nil, err
	}
	s.srv = srv
	go func() { _ = srv.Serve(ln) }()
	return s, nil
}

func (s *standIn) connects() []connectSeen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]connectSeen(nil), s.seen...)
}

// listenAll binds port on every ip, preferring 15008 (what the
// waypoint's dialer uses in production); if that is taken on this
// machine, one port free on all of them.
func listenAll(t testing.TB, ips ...string) (uint16, []net.Listener) {
	t.Helper()
	try := func(port int) []net.Listener {
		var lns []net.Listener
		for _, ip := range ips {
			p := port
			if p == 0 && len(lns) > 0 {
				p = lns[0].Addr().(*net.TCPAddr).Port
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(p)))
			if err != nil {
				for _, l := range lns {
					l.Close()
				}
				return nil
			}
			lns = append(lns, ln)
		}
		return lns
	}
	if lns := try(15008); lns != nil {
		return 15008, lns
	}
	for range 50 {
		if lns := try(0); lns != nil {
			return uint16(lns[0].Addr().(*net.TCPAddr).Port), lns
		}
	}
	t.Fatalf("no common free port on %v", ips)
	return 0, nil
}

// client is a mesh client pod: HTTP over HBONE tunnels to the waypoint,
// from its own address and with its own SVID.
type meshClient struct {
	pool     *hbone.Pool
	hc       *http.Client
	svid     *x509svid.SVID
	bundle   *certs.TrustBundle
	waypoint netip.AddrPort
	header   http.Header // CONNECT headers
}

func newClient(t testing.TB, cp *controlPlane, id spiffeid.ID, ip, waypointAddr string) *meshClient {
	t.Helper()
	c := makeClient(cp.svid(t, id), cp.bundle(), ip, waypointAddr, 64)
	t.Cleanup(func() { c.hc.CloseIdleConnections(); c.pool.Close() })
	return c
}

// makeClient builds a client; the caller closes c.pool.
func makeClient(svid *x509svid.SVID, bundle *certs.TrustBundle, ip, waypointAddr string, conns int) *meshClient {
	c := &meshClient{svid: svid, bundle: bundle, waypoint: netip.MustParseAddrPort(waypointAddr)}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c.pool = hbone.NewPool(hbone.PoolOptions{DialContext: d.DialContext})
	c.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext:         func(ctx context.Context, _, addr string) (net.Conn, error) { return c.dial(ctx, addr) },
		MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true,
	}}
	return c
}

// dial opens a tunnel to the waypoint for destination addr.
func (c *meshClient) dial(ctx context.Context, addr string) (*hbone.Stream, error) {
	dst, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	return c.pool.Dial(ctx, hbone.DialRequest{Addr: c.waypoint, Authority: dst, Source: c.svid, Bundle: c.bundle,
		ServerID: waypointID, Header: c.header})
}

// get sends GET http://<dst><path> through the waypoint.
func (c *meshClient) get(t testing.TB, dst, path string, hdr http.Header) (int, echoReply, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+dst+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", dst, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var rep echoReply
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(body, &rep)
	}
	return resp.StatusCode, rep, resp.Header
}

func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitFor(t testing.TB, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
