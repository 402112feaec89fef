package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/file"
	"github.com/warren-mesh/warren/istiod-lite/translate"
	"github.com/warren-mesh/warren/waypoint"
	"github.com/warren-mesh/warren/waypoint/xdsconfig"
)

// BenchmarkFullPath measures the waypoint on its production path against
// the L7 engine alone, same route table, same two backends, same load:
//
//	hbone:     client → HBONE (mTLS, h2 CONNECT) → waypoint (cmd/waypoint's proxy,
//	           static config) → HBONE → stand-in ztunnel → backend
//	plaintext: client → TCP → Engine.ServePlaintext → TCP → backend
//
// The waypoint runs in a child process (this test binary re-executed), so
// its CPU time is measured alone (/proc/<pid>/stat); the load generator
// (64 concurrent HTTP/1.1 keep-alive clients), the backends and the
// stand-ins run here. Metrics per sub-benchmark: rps, p50-ms, p99-ms,
// wp-cpu-ms/1k-req (the waypoint process) and all-cpu-ms/1k-req (both
// processes: client, stand-ins and backends included).
//
//	go test -run '^$' -bench BenchmarkFullPath -benchtime 20000x ./waypoint/proxy/
//
// WAYPOINT_BENCH_PROFILE=DIR writes the waypoint process's CPU profile
// to DIR/hbone.pprof and DIR/plaintext.pprof.
func BenchmarkFullPath(b *testing.B) {
	for _, mode := range []string{"hbone", "plaintext"} {
		b.Run(mode, func(b *testing.B) {
			env := benchEnvFor(b, mode)
			env.run(b)
		})
	}
}

const benchConcurrency = 64

const benchMesh = `
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
metadata: {name: client-b, labels: {warren.io/dataplane-mode: ambient}}
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
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /bench}, headers: [{name: x-bench, value: "1"}]}]
    backendRefs: [{name: echo, port: 80}]
`

// benchEnv is one mode's running setup, kept across the benchmark's runs
// (b.N = 1, then the real N) and torn down by TestMain.
type benchEnv struct {
	mode   string
	child  *exec.Cmd
	stdin  io.WriteCloser
	addr   string
	client *http.Client
	url    string
	stop   []func()
}

var (
	benchMu   sync.Mutex
	benchEnvs = map[string]*benchEnv{}
)

func stopBenchEnvs() {
	benchMu.Lock()
	defer benchMu.Unlock()
	for _, e := range benchEnvs {
		e.stdin.Close()
		done := make(chan struct{})
		go func() { e.child.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			e.child.Process.Kill()
		}
		for i := len(e.stop) - 1; i >= 0; i-- {
			e.stop[i]()
		}
	}
}

func TestMain(m *testing.M) {
	if mode := os.Getenv("WAYPOINT_BENCH_CHILD"); mode != "" {
		if err := benchChild(mode); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	stopBenchEnvs()
	os.Exit(code)
}

func benchEnvFor(b *testing.B, mode string) *benchEnv {
	benchMu.Lock()
	defer benchMu.Unlock()
	if e := benchEnvs[mode]; e != nil {
		return e
	}
	e := &benchEnv{mode: mode}
	fail := func(format string, args ...any) *benchEnv {
		for i := len(e.stop) - 1; i >= 0; i-- {
			e.stop[i]()
		}
		b.Fatalf(format, args...)
		return nil
	}
	dir, err := os.MkdirTemp("", "waypoint-bench")
	if err != nil {
		return fail("%v", err)
	}
	e.stop = append(e.stop, func() { os.RemoveAll(dir) })
	n := newNet24()
	ca, err := certs.NewCA(certs.Options{TrustDomain: td, DataDir: filepath.Join(dir, "ca")})
	if err != nil {
		return fail("%v", err)
	}
	// Two pods, each an HTTP server and its stand-in ztunnel.
	var pods strings.Builder
	var ips []string
	for i, host := range []int{hostV1, hostV2} {
		ip := n.ip(host)
		ips = append(ips, ip)
		pods.WriteString(podYAML(fmt.Sprintf("echo-%d", i), "shop", "echo", ip, "app: echo"))
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "8080"))
		if err != nil {
			return fail("%v", err)
		}
		body := []byte(fmt.Sprintf("hello from echo-%d\n", i))
		srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(body)
		})}
		go srv.Serve(ln)
		e.stop = append(e.stop, func() { srv.Close() })
	}
	port, lns := listenAll(b, ips...)
	bundle := certs.NewTrustBundle(td, ca.Bundle().Roots()...)
	for _, ln := range lns {
		svid, err := ca.NewSVID(echoID, 24*time.Hour)
		if err != nil {
			return fail("%v", err)
		}
		s, err := newStandIn(svid, bundle, ln)
		if err != nil {
			return fail("%v", err)
		}
		e.stop = append(e.stop, func() { s.srv.Close() })
	}
	snap, err := file.Parse("mesh.yaml", []byte(benchMesh+pods.String()))
	if err != nil {
		return fail("%v", err)
	}
	doc, err := translate.Translate(model.NewIndex(snap)).YAML()
	if err != nil {
		return fail("%v", err)
	}
	wp, err := ca.NewSVID(waypointID, 24*time.Hour)
	if err != nil {
		return fail("%v", err)
	}
	keyPEM, _ := certs.EncodeKey(wp.PrivateKey)
	for name, data := range map[string][]byte{"config.yaml": doc, "cert.pem": certs.EncodeCertificates(wp.Certificates),
		"key.pem": keyPEM, "root.pem": ca.Bundle().PEM()} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fail("%v", err)
		}
	}

	// The waypoint (or the bare engine) in a child process.
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "WAYPOINT_BENCH_CHILD="+mode, "WAYPOINT_BENCH_DIR="+dir,
		"WAYPOINT_BENCH_IP="+n.ip(hostWaypoint), fmt.Sprintf("WAYPOINT_BENCH_UPSTREAM_PORT=%d", port))
	child.Stderr = os.Stderr
	stdout, err := child.StdoutPipe()
	if err != nil {
		return fail("%v", err)
	}
	if e.stdin, err = child.StdinPipe(); err != nil {
		return fail("%v", err)
	}
	if err := child.Start(); err != nil {
		return fail("%v", err)
	}
	e.child = child
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if !strings.HasPrefix(line, "READY ") {
		child.Process.Kill()
		return fail("child %s: %q %v", mode, line, err)
	}
	go io.Copy(io.Discard, stdout)
	e.addr = strings.TrimSpace(strings.TrimPrefix(line, "READY "))

	if mode == "hbone" {
		svid, err := ca.NewSVID(clientBID, 24*time.Hour)
		if err != nil {
			return fail("%v", err)
		}
		c := makeClient(svid, bundle, n.ip(hostClientB), e.addr, benchConcurrency)
		e.stop = append(e.stop, func() { c.hc.CloseIdleConnections(); c.pool.Close() })
		e.client, e.url = c.hc, "http://"+echoVIP+"/bench/item"
	} else {
		tr := &http.Transport{MaxIdleConnsPerHost: benchConcurrency, MaxConnsPerHost: benchConcurrency, DisableCompression: true}
		e.stop = append(e.stop, tr.CloseIdleConnections)
		e.client, e.url = &http.Client{Transport: tr, Timeout: 30 * time.Second}, "http://"+e.addr+"/bench/item"
	}
	benchEnvs[mode] = e
	return e
}

// run sends b.N requests from benchConcurrency workers and reports.
func (e *benchEnv) run(b *testing.B) {
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr atomic.Value
	work := func() {
		for {
			i := next.Add(1) - 1
			if i >= int64(b.N) {
				return
			}
			req, _ := http.NewRequest(http.MethodGet, e.url, nil)
			req.Header.Set("X-Bench", "1")
			t0 := time.Now()
			resp, err := e.client.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			lat[i] = time.Since(t0)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
		}
	}
	childCPU0, selfCPU0 := procCPU(e.child.Process.Pid), selfCPU()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range benchConcurrency {
		wg.Add(1)
		go func() { defer wg.Done(); work() }()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	childCPU, allCPU := procCPU(e.child.Process.Pid)-childCPU0, 0.0
	allCPU = childCPU + selfCPU() - selfCPU0
	if n := failed.Load(); n > 0 {
		b.Fatalf("%s: %d of %d requests failed, first: %v", e.mode, n, b.N, firstErr.Load())
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)]) / 1e6 }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rps")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(childCPU*1000/float64(b.N)*1000, "wp-cpu-ms/1k-req")
	b.ReportMetric(allCPU*1000/float64(b.N)*1000, "all-cpu-ms/1k-req")
}

// procCPU is a process's user+system CPU seconds (all threads), from
// /proc/<pid>/stat in clock ticks (USER_HZ, 100 on Linux).
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// Fields after the command: state(0) ... utime(11) stime(12).
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// benchChild serves one mode until stdin closes.
func benchChild(mode string) error {
	dir := os.Getenv("WAYPOINT_BENCH_DIR")
	ip := os.Getenv("WAYPOINT_BENCH_IP")
	ctx, cancel := context.WithCancel(context.Background())
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	if prof := os.Getenv("WAYPOINT_BENCH_PROFILE"); prof != "" {
		// A CPU profile of the waypoint process: WAYPOINT_BENCH_PROFILE=DIR
		// writes DIR/<mode>.pprof when the benchmark ends.
		f, err := os.Create(filepath.Join(prof, mode+".pprof"))
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	switch mode {
	case "hbone":
		port, err := strconv.ParseUint(os.Getenv("WAYPOINT_BENCH_UPSTREAM_PORT"), 10, 16)
		if err != nil {
			return err
		}
		p, err := New(Options{GatewayName: "waypoint", GatewayNamespace: "shop", Identity: waypointID,
			ConfigFile: filepath.Join(dir, "config.yaml"), CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem"),
			RootCertFile: filepath.Join(dir, "root.pem"), HBONEAddr: ip + ":0", AdminAddr: "127.0.0.1:0",
			MetricsAddr: ip + ":0", ReadinessAddr: ip + ":0", UpstreamHBONEPort: uint16(port), DrainTimeout: 5 * time.Second})
		if err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- p.Start(ctx) }()
		deadline := time.Now().Add(30 * time.Second)
		for p.Ready() != nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("not ready: %v", p.Ready())
			}
			time.Sleep(10 * time.Millisecond)
		}
		fmt.Printf("READY %s\n", p.Addr(ListenerHBONE))
		return <-done
	case "plaintext":
		store := waypoint.NewStore(waypoint.StoreOptions{})
		h, err := xdsconfig.New(xdsconfig.Options{Store: store, Bundle: certs.NewTrustBundle(td)})
		if err != nil {
			return err
		}
		r, err := xdsconfig.LoadFile(filepath.Join(dir, "config.yaml"))
		if err != nil {
			return err
		}
		if err := h.ReplaceAll(r); err != nil {
			return err
		}
		eng, err := waypoint.New(waypoint.Options{Store: store, Registerer: prometheus.NewRegistry()})
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			return err
		}
		go eng.ServePlaintext(ln, waypoint.Destination{Service: echoKey, Port: 80, SourceNamespace: "client-b",
			SourceIdentity: clientBID.String()})
		fmt.Printf("READY %s\n", ln.Addr())
		<-ctx.Done()
		return eng.Close()
	}
	return fmt.Errorf("unknown mode %q", mode)
}
