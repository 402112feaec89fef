package agent_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/warren-mesh/warren/redirect/agent"
	"github.com/warren-mesh/warren/redirect/internal/podtest"
	"github.com/warren-mesh/warren/redirect/loader"
	"github.com/warren-mesh/warren/redirect/nodeproto"
)

func TestMain(m *testing.M) { podtest.Main(m) }

type fakes struct {
	dp *loader.Fake
	zt *nodeproto.Fake
	a  *agent.Agent
}

func newFakes(t *testing.T) *fakes {
	t.Helper()
	f := &fakes{dp: loader.NewFake(), zt: nodeproto.NewFake()}
	for i := uint64(1); i <= 9; i++ {
		f.dp.AddNetns(netnsPath(i), i)
	}
	a, err := agent.New(agent.Options{Dataplane: f.dp, Ztunnel: f.zt, ProbeSources: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, SkipCgroups: []uint64{5}})
	if err != nil {
		t.Fatal(err)
	}
	f.a = a
	t.Cleanup(func() { a.Close() })
	return f
}

func netnsPath(i uint64) string { return "/var/run/netns/cni-" + string(rune('0'+i)) }

func spec(uid string, netns uint64) agent.PodSpec {
	return agent.PodSpec{UID: uid, Namespace: "shop", Name: "pod-" + uid, Netns: netnsPath(netns), IPs: []netip.Addr{netip.MustParseAddr("10.244.0.7")}}
}

func enrolled(t *testing.T, dp *loader.Fake) []uint64 {
	t.Helper()
	m, err := dp.Enrolled()
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for c := range m {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

func TestNewSetsNodeWideState(t *testing.T) {
	f := newFakes(t)
	if got := f.dp.ProbeSources(); len(got) != 1 || got[0] != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("probe sources %v", got)
	}
	if got := f.dp.SkipCgroups(); !slices.Equal(got, []uint64{5}) {
		t.Errorf("skip cgroups %v", got)
	}
	if _, err := agent.New(agent.Options{}); err == nil {
		t.Error("New without a dataplane succeeded")
	}
}

func TestSetEnrolsReleasesIdempotent(t *testing.T) {
	f := newFakes(t)
	ctx := context.Background()
	if err := f.a.Set(ctx, []agent.PodSpec{spec("a", 1), spec("b", 2)}); err != nil {
		t.Fatal(err)
	}
	if got := enrolled(t, f.dp); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("enrolled %v", got)
	}
	if p, ok := f.zt.Pod("b"); !ok || p.NetnsCookie != 2 || p.Name != "pod-b" || len(p.IPs) != 1 {
		t.Errorf("ztunnel got %+v", p)
	}
	// Capture switched on only after ztunnel had the pod.
	if ops := f.zt.Ops(); !slices.Equal(ops, []string{"add a", "add b"}) {
		t.Errorf("ztunnel ops %v", ops)
	}
	before := len(f.dp.Ops())
	if err := f.a.Set(ctx, []agent.PodSpec{spec("b", 2), spec("a", 1)}); err != nil {
		t.Fatal(err)
	}
	if len(f.dp.Ops()) != before || len(f.zt.Ops()) != 2 {
		t.Errorf("repeated Set changed something: %v %v", f.dp.Ops(), f.zt.Ops())
	}
	if err := f.a.Set(ctx, []agent.PodSpec{spec("a", 1)}); err != nil {
		t.Fatal(err)
	}
	if got := enrolled(t, f.dp); !slices.Equal(got, []uint64{1}) {
		t.Errorf("after release: %v", got)
	}
	if got := f.zt.Pods(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("ztunnel pods %v", got)
	}
	if !f.a.Enrolled("a") || f.a.Enrolled("b") {
		t.Errorf("Enrolled: a %v b %v", f.a.Enrolled("a"), f.a.Enrolled("b"))
	}
	if err := f.a.Set(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := enrolled(t, f.dp); len(got) != 0 {
		t.Errorf("empty Set left %v", got)
	}
}

func TestSetUpdatesExclusionsInPlace(t *testing.T) {
	f := newFakes(t)
	ctx := context.Background()
	s := spec("a", 1)
	if err := f.a.Set(ctx, []agent.PodSpec{s}); err != nil {
		t.Fatal(err)
	}
	s.Config = loader.PodConfig{ExcludeOutboundPorts: []uint16{9000, 22}, ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	if err := f.a.Set(ctx, []agent.PodSpec{s}); err != nil {
		t.Fatal(err)
	}
	m, _ := f.dp.Enrolled()
	if !m[1].Equal(s.Config) {
		t.Errorf("config %+v, want %+v", m[1], s.Config)
	}
	if ops := f.zt.Ops(); len(ops) != 1 {
		t.Errorf("a config change re-added the pod to ztunnel: %v", ops)
	}
}

func TestSetWithoutZtunnelIsPendingNotPlaintextCapture(t *testing.T) {
	f := newFakes(t)
	f.zt.SetConnected(false)
	err := f.a.Set(context.Background(), []agent.PodSpec{spec("a", 1)})
	var se *agent.SetError
	if !errors.As(err, &se) || !errors.Is(se.Pods["a"], nodeproto.ErrNotConnected) {
		t.Fatalf("Set without ztunnel: %v", err)
	}
	if got := enrolled(t, f.dp); len(got) != 0 {
		t.Errorf("capture switched on without ztunnel: %v", got)
	}
	st := f.a.Status()
	if len(st) != 1 || st[0].Enrolled || st[0].Err == nil {
		t.Errorf("status %+v", st)
	}
	f.zt.SetConnected(true)
	if err := f.a.Set(context.Background(), []agent.PodSpec{spec("a", 1)}); err != nil {
		t.Fatal(err)
	}
	if !f.a.Enrolled("a") {
		t.Error("not enrolled once ztunnel is back")
	}
}

func TestSetFailuresAreIsolated(t *testing.T) {
	f := newFakes(t)
	f.dp.FailEnrol(2, errors.New("map full"))
	bad := spec("gone", 1)
	bad.Netns = "/proc/999999999/ns/net"
	err := f.a.Set(context.Background(), []agent.PodSpec{spec("a", 1), spec("b", 2), bad, {UID: "x"}, spec("a", 3)})
	var se *agent.SetError
	if !errors.As(err, &se) {
		t.Fatalf("Set: %v", err)
	}
	for _, uid := range []string{"b", "gone", "x", "a"} {
		if se.Pods[uid] == nil {
			t.Errorf("no error for %s in %v", uid, se)
		}
	}
	if !f.a.Enrolled("a") {
		t.Error("pod a (given twice, first valid) not enrolled")
	}
	// ztunnel was told to forget the pod whose capture failed.
	if _, ok := f.zt.Pod("b"); ok {
		t.Error("ztunnel keeps pod b although capture failed")
	}
}

func TestSetAdoptsPinnedState(t *testing.T) {
	f := newFakes(t)
	cfg := loader.PodConfig{ExcludeInboundPorts: []uint16{8080}}
	f.dp.Preload(1, cfg) // a previous agent's pod, still pinned
	f.dp.Preload(7, loader.PodConfig{})
	s := spec("a", 1)
	s.Config = cfg
	if err := f.a.Set(context.Background(), []agent.PodSpec{s}); err != nil {
		t.Fatal(err)
	}
	if got := enrolled(t, f.dp); !slices.Equal(got, []uint64{1}) {
		t.Errorf("enrolled %v: the stale netns 7 should be released", got)
	}
	// Adopted: capture never went off, the listener stays, and ztunnel
	// learns about the pod from the snapshot, not from an add.
	if ops := f.dp.Ops(); !slices.Contains(ops, "enrol 1") || slices.Contains(ops, "release 1") {
		t.Errorf("dataplane ops %v", ops)
	}
	if f.dp.Listeners(1) != 1 {
		t.Errorf("adopted pod lost its listener")
	}
	if len(f.zt.Ops()) != 0 {
		t.Errorf("ztunnel ops %v", f.zt.Ops())
	}
}

func TestSetSandboxReplaced(t *testing.T) {
	f := newFakes(t)
	ctx := context.Background()
	if err := f.a.Set(ctx, []agent.PodSpec{spec("a", 1)}); err != nil {
		t.Fatal(err)
	}
	if err := f.a.Set(ctx, []agent.PodSpec{spec("a", 4)}); err != nil {
		t.Fatal(err)
	}
	if got := enrolled(t, f.dp); !slices.Equal(got, []uint64{4}) {
		t.Errorf("enrolled %v", got)
	}
	if p, _ := f.zt.Pod("a"); p.NetnsCookie != 4 {
		t.Errorf("ztunnel has cookie %d", p.NetnsCookie)
	}
}

// TestSnapshotOnConnect runs the agent behind a real nodeproto server: a
// connecting ztunnel gets every enrolled pod, pods waiting for a ztunnel
// are enrolled, and the connecting process's cgroup is exempted.
func TestSnapshotOnConnect(t *testing.T) {
	dp := loader.NewFake()
	dp.AddNetns(netnsPath(1), 1)
	dp.AddNetns(netnsPath(2), 2)
	path := filepath.Join(t.TempDir(), "zt.sock")
	var a *agent.Agent
	srv, err := nodeproto.Listen(nodeproto.ServerOptions{Path: path, OnConnect: func(ctx context.Context, c *nodeproto.Conn) error {
		return a.Snapshot(ctx, c)
	}})
	if err != nil {
		t.Fatal(err)
	}
	a, err = agent.New(agent.Options{Dataplane: dp, Ztunnel: srv})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx)
	defer srv.Close()
	dp.Preload(1, loader.PodConfig{})
	if err := a.Set(ctx, []agent.PodSpec{spec("a", 1), spec("b", 2)}); err == nil {
		t.Fatal("Set with no ztunnel connected succeeded for a new pod")
	}
	h := &recorder{}
	go nodeproto.Run(ctx, path, h, 20*time.Millisecond, nil)
	deadline := time.Now().Add(5 * time.Second)
	for !a.Enrolled("b") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !a.Enrolled("b") {
		t.Fatal("pending pod not enrolled when ztunnel connected")
	}
	if got := h.get(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("ztunnel got %v", got)
	}
	cg, err := loader.CgroupOfPID(os.Getpid())
	if err != nil {
		t.Skipf("no cgroup v2 here: %v", err)
	}
	id, _ := loader.CgroupID(cg)
	if got := dp.SkipCgroups(); !slices.Contains(got, id) {
		t.Errorf("skip cgroups %v lack ztunnel's %d", got, id)
	}
}

type recorder struct {
	mu   sync.Mutex
	uids []string
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.uids)
	slices.Sort(out)
	return out
}

func (r *recorder) AddPod(ctx context.Context, p nodeproto.Pod, netns *os.File) ([]*os.File, error) {
	netns.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Contains(r.uids, p.UID) {
		r.uids = append(r.uids, p.UID)
	}
	return nil, nil
}
func (r *recorder) RemovePod(context.Context, string) error      { return nil }
func (r *recorder) SnapshotDone(context.Context, []string) error { return nil }
