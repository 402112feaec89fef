package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/file"
	"github.com/warren-mesh/warren/istiod-lite/translate"
	"github.com/warren-mesh/warren/ztunnel/hbone"
)

// buildBinary compiles cmd/waypoint once per test binary.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "waypoint-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "waypoint")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func TestBinaryRefusesBadFlags(t *testing.T) {
	bin := buildBinary(t)
	for _, args := range [][]string{
		{},
		{"--gateway-name=w", "--gateway-namespace=ns", "--config-file=c.yaml", "--cert-file=c.pem", "--key-file=k.pem", "--root-cert-file=r.pem", "--waypoint-for=pods"},
		{"--no-such-flag"},
	} {
		cmd := exec.Command(bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit code 2", args, err)
		}
		if !strings.Contains(stderr.String(), "waypoint:") && !strings.Contains(stderr.String(), "flag provided but not defined") {
			t.Errorf("%v: stderr %q does not say what is wrong", args, stderr.String())
		}
	}
}

const staticMesh = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: warren-waypoint}
spec: {controllerName: warren.io/waypoint-controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {warren.io/dataplane-mode: ambient, warren.io/use-waypoint: waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
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
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
  selector: {app: echo}
---
apiVersion: v1
kind: Pod
metadata: {name: echo-0, namespace: shop, labels: {app: echo}}
spec:
  serviceAccountName: echo
  containers: [{name: echo, image: echo, ports: [{containerPort: 8080}]}]
status: {phase: Running, podIP: POD_IP, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-config, value: VERSION}]}}]
    backendRefs: [{name: echo, port: 80}]
`

// translateTo writes what `warrenctl x translate` prints for the mesh.
func translateTo(t *testing.T, path, podIP, version string) {
	t.Helper()
	doc := strings.NewReplacer("POD_IP", podIP, "VERSION", version).Replace(staticMesh)
	snap, err := file.Parse("mesh.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	out, err := translate.Translate(model.NewIndex(snap)).YAML()
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestBinaryStaticMode runs the built binary without a control plane:
// --config-file (translate's output) and a static identity; a client
// reaches a pod through it over HBONE on both sides; a config edit is
// picked up; SIGTERM drains and exits 0.
func TestBinaryStaticMode(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	ca, err := certs.NewCA(certs.Options{TrustDomain: td, DataDir: filepath.Join(dir, "ca")})
	if err != nil {
		t.Fatal(err)
	}
	svid := func(id string) *x509svid.SVID {
		s, err := ca.NewSVID(spiffeid.RequireFromString(id), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	prefix := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(150), 1+rand.IntN(250))
	podIP, wpIP := prefix+"11", prefix+"2"

	// The pod: an HTTP server and, in front, its ztunnel stand-in.
	app, err := net.Listen("tcp", podIP+":8080")
	if err != nil {
		t.Fatal(err)
	}
	appSrv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pod echo-0 path %s x-config %s", r.URL.Path, r.Header.Get("X-Config"))
	})}
	go appSrv.Serve(app)
	defer appSrv.Close()
	zt, err := net.Listen("tcp", podIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	bundle := certs.NewTrustBundle(td, ca.Bundle().Roots()...)
	standIn, err := hbone.NewServer(hbone.ServerOptions{
		TLSConfig: certs.HBONEServerConfig(svid("spiffe://cluster.local/ns/shop/sa/echo"), bundle, certs.AuthorizeAny(), certs.TLSOptions{}),
		Handler: hbone.HandlerFunc(func(r *hbone.Request) {
			c, err := net.Dial("tcp", r.Authority.String())
			if err != nil {
				r.Reject(503)
				return
			}
			s, err := r.Accept()
			if err != nil {
				c.Close()
				return
			}
			hbone.Splice(s, c)
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	go standIn.Serve(zt)
	defer standIn.Close()

	cfg := filepath.Join(dir, "config.yaml")
	translateTo(t, cfg, podIP, "one")
	wp := svid("spiffe://cluster.local/ns/shop/sa/waypoint")
	keyPEM, err := certs.EncodeKey(wp.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certFile, keyFile, rootFile := write("cert.pem", certs.EncodeCertificates(wp.Certificates)), write("key.pem", keyPEM), write("root.pem", ca.Bundle().PEM())

	cmd := exec.Command(bin, "--gateway-name=waypoint", "--gateway-namespace=shop", "--config-file="+cfg,
		"--cert-file="+certFile, "--key-file="+keyFile, "--root-cert-file="+rootFile,
		"--listen-address="+wpIP, "--hbone-port=0", "--readiness-port=0", "--metrics-port=0", "--admin-port=0",
		fmt.Sprintf("--upstream-hbone-port=%d", zt.Addr().(*net.TCPAddr).Port),
		"--log-format=json", "--access-log=stdout", "--drain-timeout=10s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout syncBuf
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	started := make(chan map[string]any, 1)
	var logs syncBuf
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write(append(sc.Bytes(), '\n'))
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "waypoint: started" {
				started <- m
			}
		}
		exited <- cmd.Wait()
	}()
	defer func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("waypoint stderr:\n%s", logs.String())
		}
	}()
	var addrs map[string]any
	select {
	case addrs = <-started:
	case err := <-exited:
		t.Fatalf("waypoint exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("waypoint did not start")
	}
	ready := fmt.Sprintf("http://%s/healthz/ready", addrs["readiness"])
	waitFor(t, "readiness", func() bool {
		resp, err := http.Get(ready)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	pool := hbone.NewPool(hbone.PoolOptions{})
	defer pool.Close()
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return pool.Dial(ctx, hbone.DialRequest{Addr: netip.MustParseAddrPort(addrs["hbone"].(string)), Authority: netip.MustParseAddrPort(addr),
				Source: svid("spiffe://cluster.local/ns/shop/sa/client"), Bundle: bundle,
				ServerID: spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/waypoint")})
		},
	}}
	get := func(path string) string {
		resp, err := client.Get("http://10.96.0.20:80" + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	if got := get("/hello"); got != "pod echo-0 path /hello x-config one" {
		t.Fatalf("through the waypoint: %q", got)
	}
	if !eventually(func() bool { return strings.Contains(stdout.String(), `"path":"/hello"`) }) {
		t.Errorf("no access log line on stdout: %q", stdout.String())
	}
	// The static file is watched: an edit applies without a restart.
	translateTo(t, cfg, podIP, "two")
	if !eventually(func() bool { return strings.HasSuffix(get("/edited"), "x-config two") }) {
		t.Error("the edited config file was not picked up")
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30 s after SIGTERM")
	}
	if !strings.Contains(logs.String(), `"msg":"waypoint: drained"`) {
		t.Error("no clean drain logged")
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func eventually(f func() bool) bool {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if f() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	if !eventually(f) {
		t.Fatalf("timed out waiting for %s", what)
	}
}
