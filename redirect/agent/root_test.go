package agent_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/warren-mesh/warren/redirect/agent"
	"github.com/warren-mesh/warren/redirect/cni"
	"github.com/warren-mesh/warren/redirect/internal/podtest"
	"github.com/warren-mesh/warren/redirect/loader"
	"github.com/warren-mesh/warren/redirect/nodeproto"
)

// Root tests: the real node agent (loader on a cgroup the test owns,
// nodeproto server, controller fed with Kubernetes objects) capturing a
// real pod (netns + cgroup + process) into a fake ztunnel speaking
// nodeproto.

const node = "node-a"

type podWorld struct {
	node, pod *podtest.Netns
	link      podtest.Link
	attach    *podtest.Cgroup
	podCg     *podtest.Cgroup
	uid       string
	app       *podtest.Proc
	pin, sock string
}

func newPodWorld(t testing.TB) *podWorld {
	podtest.Require(t)
	w := &podWorld{uid: podtest.UID()}
	w.node = podtest.NewNetns(t)
	w.pod = podtest.NewNetns(t)
	w.link = podtest.Connect(t, w.pod, w.node, 1)
	w.attach = podtest.NewCgroup(t, nil)
	// Named like kubelet's pod cgroup, so the agent can find the pod's
	// netns in /proc after a restart.
	w.podCg = podtest.NewCgroupNamed(t, w.attach, "pod"+w.uid)
	w.pin = podtest.PinPath(t)
	w.sock = filepath.Join(t.TempDir(), "ztunnel.sock")
	podtest.Serve(t, w.node, "tcp", ":9000", "remote")
	podtest.Serve(t, w.node, "tcp", ":9100", "remote9100")
	podtest.AddAddr(t, w.node, netip.MustParseAddr("198.51.100.10"))
	podtest.Serve(t, w.pod, "tcp", ":8080", "app")
	podtest.Serve(t, w.pod, "tcp", ":8081", "app8081")
	w.app = podtest.StartProc(t, w.pod, w.podCg)
	return w
}

func (w *podWorld) remote() string { return netip.AddrPortFrom(w.link.B4, 9000).String() }

func (w *podWorld) namespace(labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: labels}}
}

func (w *podWorld) kubePod(labels, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "app", UID: types.UID(w.uid), Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: w.link.A4.String()}, {IP: w.link.A6.String()}}},
	}
}

func (w *podWorld) cniAdd() cni.PodRequest {
	return cni.PodRequest{Namespace: "shop", Name: "app", UID: w.uid, ContainerID: "sandbox-1", Netns: w.pod.Path, IfName: "wa1",
		IPs: []string{w.link.A4.String(), w.link.A6.String()}}
}

// stack is one run of the node agent.
type stack struct {
	l      *loader.Loader
	srv    *nodeproto.Server
	a      *agent.Agent
	c      *agent.Controller
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startStack(t testing.TB, w *podWorld, probes []netip.Addr) *stack {
	t.Helper()
	s := &stack{}
	l, err := loader.Open(loader.Options{Cgroup: w.attach.Path, PinPath: w.pin})
	if err != nil {
		t.Fatalf("loader.Open: %v", err)
	}
	s.l = l
	srv, err := nodeproto.Listen(nodeproto.ServerOptions{Path: w.sock, Node: node, OrigDst: l.OriginalDst,
		OnConnect: func(ctx context.Context, c *nodeproto.Conn) error { return s.a.Snapshot(ctx, c) }})
	if err != nil {
		t.Fatal(err)
	}
	s.srv = srv
	a, err := agent.New(agent.Options{Dataplane: l, Ztunnel: srv, ProbeSources: probes})
	if err != nil {
		t.Fatal(err)
	}
	s.a = a
	s.c = agent.NewController(agent.ControllerOptions{Agent: a, NodeName: node, Resync: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(2)
	go func() { defer s.wg.Done(); srv.Serve(ctx) }()
	go func() { defer s.wg.Done(); s.c.Run(ctx) }()
	t.Cleanup(s.stop)
	return s
}

// stop ends this agent run; the pins (and capture) stay.
func (s *stack) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.srv.Close()
	s.wg.Wait()
	s.a.Close()
	s.l.Close()
	s.cancel = nil
}

func startZtunnel(t testing.TB, w *podWorld, strict bool) *podtest.FakeZtunnel {
	t.Helper()
	z := podtest.NewFakeZtunnel()
	z.Strict = strict
	if err := z.Start(context.Background(), w.sock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(z.Close)
	return z
}

func expect(t *testing.T, what string, r podtest.DialResult, prefix string) {
	t.Helper()
	if r.Err != "" || !strings.HasPrefix(r.Data, prefix) {
		t.Errorf("%s: got %v, want %q…", what, r, prefix)
	}
}

func enrolViaCNI(t *testing.T, w *podWorld, s *stack, annotations map[string]string) {
	t.Helper()
	s.c.UpsertNamespace(w.namespace(map[string]string{agent.LabelDataplaneMode: agent.ModeAmbient}))
	s.c.UpsertPod(w.kubePod(nil, annotations))
	s.c.SetSynced()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The CNI plugin runs at sandbox creation, before ztunnel may have
	// connected: retry as the runtime would.
	for {
		resp, err := s.c.CNIAdd(ctx, w.cniAdd())
		if err == nil && resp.Enrolled {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("CNIAdd: %+v, %v", resp, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRootCaptureThroughAgent is the whole path: CNI ADD enrols the pod,
// the pod's connects to any ip:port land at ztunnel's 15001 with the right
// original destination, inbound to any port lands at 15006 with the right
// local address, and what must stay untouched does.
func TestRootCaptureThroughAgent(t *testing.T) {
	w := newPodWorld(t)
	s := startStack(t, w, nil)
	z := startZtunnel(t, w, false)
	expect(t, "before enrol", w.app.Dial("tcp", w.remote()), "remote")
	enrolViaCNI(t, w, s, map[string]string{
		agent.AnnotationExcludeOutboundPorts: "9100",
		agent.AnnotationExcludeInboundPorts:  "8081",
		agent.AnnotationExcludeOutboundCIDRs: "198.51.100.0/24",
	})
	if got := z.Pods(); len(got) != 1 || got[0] != w.uid {
		t.Fatalf("ztunnel serves %v", got)
	}
	for _, c := range []struct{ network, addr, orig string }{
		{"tcp4", "203.0.113.7:80", "203.0.113.7:80"},
		{"tcp4", w.remote(), w.remote()},
		{"tcp6", "[2001:db8::7]:443", "[2001:db8::7]:443"},
		{"tcp6raw", "[::ffff:198.18.0.3]:8443", "198.18.0.3:8443"},
	} {
		expect(t, "outbound "+c.addr, w.app.Dial(c.network, c.addr), "ztunnel-outbound orig="+c.orig+" pod="+w.uid)
	}
	expect(t, "excluded port", w.app.Dial("tcp", netip.AddrPortFrom(w.link.B4, 9100).String()), "remote9100")
	expect(t, "excluded CIDR", w.app.Dial("tcp", "198.51.100.10:9000"), "remote")
	expect(t, "loopback", w.app.Dial("tcp", "127.0.0.1:8080"), "app")
	for _, dst := range []netip.AddrPort{netip.AddrPortFrom(w.link.A4, 8080), netip.AddrPortFrom(w.link.A4, 23456), netip.AddrPortFrom(w.link.A6, 8080)} {
		expect(t, "inbound "+dst.String(), podtest.DialFrom(w.node, "tcp", "", dst.String()), "ztunnel-inbound local="+dst.String())
	}
	expect(t, "excluded inbound port", podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(w.link.A4, 8081).String()), "app8081")
	expect(t, "passthrough from 127.0.0.6", podtest.DialFrom(w.pod, "tcp4", "127.0.0.6:0", netip.AddrPortFrom(w.link.A4, 8080).String()), "app")
	dns := netip.AddrPortFrom(w.link.B4, 53).String()
	podtest.ServeDNS(t, w.node, dns, netip.MustParseAddr("192.0.2.53"))
	if r := w.app.DNS(dns, "db.shop.svc.cluster.local."); r.Err != "" || r.Data != "192.0.2.53" {
		t.Errorf("DNS over UDP from an enrolled pod: %v", r)
	}
	// A pod of a plain namespace beside it is untouched.
	other := podtest.NewNetns(t)
	podtest.Connect(t, other, w.node, 2)
	op := podtest.StartProc(t, other, podtest.NewCgroup(t, w.attach))
	expect(t, "unenrolled pod", op.Dial("tcp", w.remote()), "remote")
}

// TestRootLiveEnrolRelease: a namespace label enrols the running pod and a
// pod label releases it, new connections follow, the app never restarts.
func TestRootLiveEnrolRelease(t *testing.T) {
	w := newPodWorld(t)
	s := startStack(t, w, nil)
	startZtunnel(t, w, false)
	s.c.UpsertNamespace(w.namespace(nil))
	s.c.UpsertPod(w.kubePod(nil, nil))
	s.c.SetSynced()
	resp, err := s.c.CNIAdd(context.Background(), w.cniAdd())
	if err != nil || resp.Enrolled {
		t.Fatalf("CNIAdd in a plain namespace: %+v %v", resp, err)
	}
	expect(t, "plain namespace", w.app.Dial("tcp", w.remote()), "remote")
	s.c.UpsertNamespace(w.namespace(map[string]string{agent.LabelDataplaneMode: agent.ModeAmbient}))
	lat := waitDial(t, w.app, w.remote(), "ztunnel-outbound orig="+w.remote())
	t.Logf("label change → next connection captured: %v (5 ms poll included; make bench measures it)", lat)
	s.c.UpsertPod(w.kubePod(map[string]string{agent.LabelDataplaneMode: agent.ModeNone}, nil))
	waitDial(t, w.app, w.remote(), "remote")
	expect(t, "released inbound", podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(w.link.A4, 8080).String()), "app")
}

// waitDial dials until the answer starts with prefix (events are
// asynchronous) and returns how long it took.
func waitDial(t *testing.T, p *podtest.Proc, addr, prefix string) time.Duration {
	t.Helper()
	start := time.Now()
	var r podtest.DialResult
	for time.Since(start) < 10*time.Second {
		r = p.Dial("tcp", addr)
		if r.Err == "" && strings.HasPrefix(r.Data, prefix) {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("dial %s: last %v, want %q…", addr, r, prefix)
	return 0
}

// TestRootProbesStrict: with strict mTLS the fake ztunnel rejects inbound
// plaintext, yet kubelet probes from the node's address reach the app.
func TestRootProbesStrict(t *testing.T) {
	w := newPodWorld(t)
	s := startStack(t, w, []netip.Addr{w.link.B4, w.link.B6})
	startZtunnel(t, w, true)
	enrolViaCNI(t, w, s, nil)
	expect(t, "kubelet probe v4", podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(w.link.A4, 8080).String()), "app")
	expect(t, "kubelet probe v6", podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(w.link.A6, 8080).String()), "app")
	other := podtest.NewNetns(t)
	lk := podtest.Connect(t, w.pod, other, 3)
	expect(t, "plaintext from elsewhere", podtest.DialFrom(other, "tcp", "", netip.AddrPortFrom(lk.A4, 8080).String()), "ztunnel-inbound-rejected")
}

// TestRootZtunnelOwnSocketsNotLooped: ztunnel runs below the attach
// cgroup; the agent exempts its cgroup (found from the nodeproto peer) so
// its connects from inside the pod's netns go where they are addressed.
func TestRootZtunnelOwnSocketsNotLooped(t *testing.T) {
	w := newPodWorld(t)
	s := startStack(t, w, nil)
	ztCg := podtest.NewCgroup(t, w.attach)
	zt := podtest.StartProc(t, w.node, ztCg)
	errc := make(chan error, 1)
	go func() { errc <- zt.StartZtunnel(w.sock) }()
	enrolViaCNI(t, w, s, nil)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	expect(t, "app", w.app.Dial("tcp", w.remote()), "ztunnel-outbound orig="+w.remote())
	expect(t, "ztunnel's own connect from the pod netns", zt.ZtunnelDial(w.uid, "tcp", w.remote()), "remote")
	expect(t, "ztunnel's passthrough to the app", zt.ZtunnelDial(w.uid, "tcp", netip.AddrPortFrom(w.link.A4, 8080).String()), "app")
	st, err := s.l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st["skipped_ztunnel"] == 0 {
		t.Errorf("stats %v: ztunnel's connects not seen as skipped", st)
	}
}

// TestRootAgentRestartKeepsCapture: the agent stops (programs, maps and
// links stay pinned), capture goes on, a new agent re-adopts the pod
// without a gap and ztunnel, reconnecting, keeps its listeners.
func TestRootAgentRestartKeepsCapture(t *testing.T) {
	w := newPodWorld(t)
	s1 := startStack(t, w, nil)
	z := startZtunnel(t, w, false)
	enrolViaCNI(t, w, s1, nil)
	in1, err := z.InboundListener(w.uid)
	if err != nil {
		t.Fatal(err)
	}
	in1.Close()

	// Dial continuously across the restart: every connection must be captured.
	var dials, misses atomic.Int64
	var lastMiss atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := w.app.Dial("tcp", w.remote())
			dials.Add(1)
			if !strings.HasPrefix(r.Data, "ztunnel-outbound orig="+w.remote()) {
				misses.Add(1)
				lastMiss.Store(r.String())
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	s1.stop()
	expect(t, "agent down: inbound", podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(w.link.A4, 8080).String()), "ztunnel-inbound")
	time.Sleep(100 * time.Millisecond)

	s2 := startStack(t, w, nil)
	s2.c.UpsertNamespace(w.namespace(map[string]string{agent.LabelDataplaneMode: agent.ModeAmbient}))
	s2.c.UpsertPod(w.kubePod(nil, nil))
	s2.c.SetSynced() // the new agent knows no netns: it finds the pod in /proc
	deadline := time.Now().Add(10 * time.Second)
	for !(s2.a.Enrolled(w.uid) && s2.srv.Connected()) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !s2.a.Enrolled(w.uid) || !s2.srv.Connected() {
		t.Fatalf("after restart: enrolled %v, ztunnel connected %v, status %+v", s2.a.Enrolled(w.uid), s2.srv.Connected(), s2.a.Status())
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	<-done
	if misses.Load() != 0 {
		t.Errorf("%d of %d connections across the restart not captured (last: %v)", misses.Load(), dials.Load(), lastMiss.Load())
	}
	t.Logf("%d connections across the agent restart, all captured", dials.Load())
	if got := z.Pods(); len(got) != 1 || got[0] != w.uid {
		t.Errorf("ztunnel serves %v after the snapshot", got)
	}
	expect(t, "after restart: inbound", podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(w.link.A4, 8080).String()), "ztunnel-inbound")
	// The new agent fully owns the pod: releasing works.
	s2.c.UpsertPod(w.kubePod(map[string]string{agent.LabelDataplaneMode: agent.ModeNone}, nil))
	waitDial(t, w.app, w.remote(), "remote")
	waitUntil(t, func() bool { return len(z.Pods()) == 0 })
}

// TestRootAgentRefusesWithoutCapabilities: the agent's dataplane refuses
// to start, naming what is missing, instead of running without capture.
func TestRootAgentRefusesWithoutCapabilities(t *testing.T) {
	w := newPodWorld(t)
	p := podtest.StartProcWrapped(t, w.pod, w.podCg, "setpriv", "--bounding-set=-all", "--inh-caps=-all", "--")
	notSupported, err := p.OpenLoader(w.attach.Path, podtest.PinPath(t))
	if err == nil || !notSupported || !strings.Contains(err.Error(), "CAP_BPF") {
		t.Fatalf("loader.Open without capabilities: %v (ErrNotSupported: %v)", err, notSupported)
	}
	fmt.Fprintln(testWriter{t}, "refused:", err)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
