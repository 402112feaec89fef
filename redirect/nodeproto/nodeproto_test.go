package nodeproto_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/warren-mesh/warren/redirect/nodeproto"
)

// handler is a ztunnel that opens a real listener per pod.
type handler struct {
	mu        sync.Mutex
	pods      map[string]nodeproto.Pod
	lns       map[string]net.Listener
	snapshots [][]string
	failAdd   string
	snapDone  chan struct{}
}

func newHandler() *handler {
	return &handler{pods: map[string]nodeproto.Pod{}, lns: map[string]net.Listener{}, snapDone: make(chan struct{}, 8)}
}

func (h *handler) AddPod(ctx context.Context, pod nodeproto.Pod, netns *os.File) ([]*os.File, error) {
	defer netns.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	if pod.UID == h.failAdd {
		return nil, errors.New("no room at the inn")
	}
	// The netns descriptor really arrived: it reads as the file sent.
	b := make([]byte, 64)
	n, _ := netns.ReadAt(b, 0)
	if string(b[:n]) != "netns of "+pod.UID {
		return nil, fmt.Errorf("netns content %q", b[:n])
	}
	ln := h.lns[pod.UID]
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		h.lns[pod.UID] = ln
	}
	h.pods[pod.UID] = pod
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return nil, err
	}
	return []*os.File{f}, nil
}

func (h *handler) RemovePod(ctx context.Context, uid string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ln := h.lns[uid]; ln != nil {
		ln.Close()
	}
	delete(h.lns, uid)
	delete(h.pods, uid)
	return nil
}

func (h *handler) SnapshotDone(ctx context.Context, uids []string) error {
	h.mu.Lock()
	h.snapshots = append(h.snapshots, uids)
	for uid := range h.pods {
		if !slices.Contains(uids, uid) {
			h.lns[uid].Close()
			delete(h.lns, uid)
			delete(h.pods, uid)
		}
	}
	h.mu.Unlock()
	h.snapDone <- struct{}{}
	return nil
}

func (h *handler) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ln := range h.lns {
		ln.Close()
	}
}

func netnsFile(t *testing.T, uid string) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), uid)
	if err := os.WriteFile(p, []byte("netns of "+uid), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func pod(uid string) nodeproto.Pod {
	return nodeproto.Pod{UID: uid, Namespace: "ns", Name: "pod-" + uid, IPs: []netip.Addr{netip.MustParseAddr("10.1.2.3")}, NetnsCookie: 42}
}

type env struct {
	srv       *nodeproto.Server
	path      string
	connected chan *nodeproto.Conn
}

// serve starts a Server whose snapshot is the given pods.
func serve(t *testing.T, snapshot ...string) *env {
	t.Helper()
	e := &env{path: filepath.Join(t.TempDir(), "zt.sock"), connected: make(chan *nodeproto.Conn, 4)}
	srv, err := nodeproto.Listen(nodeproto.ServerOptions{
		Path: e.path, Node: "node-a",
		OnConnect: func(ctx context.Context, c *nodeproto.Conn) error {
			for _, uid := range snapshot {
				ls, err := c.AddPod(ctx, pod(uid), netnsFile(t, uid))
				if err != nil {
					return err
				}
				for _, f := range ls {
					f.Close()
				}
			}
			e.connected <- c
			return c.SnapshotDone(ctx)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	go srv.Serve(ctx)
	t.Cleanup(func() { cancel(); srv.Close() })
	return e
}

func connect(t *testing.T, e *env, h *handler) (*nodeproto.Client, *nodeproto.Conn, func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := nodeproto.Dial(ctx, e.path)
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { cl.Serve(sctx, h); close(done) }()
	select {
	case <-h.snapDone:
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot")
	}
	c := <-e.connected
	waitFor(t, func() bool { return e.srv.Active() == c })
	stop := func() { scancel(); cl.Close(); <-done }
	t.Cleanup(stop)
	return cl, c, stop
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not reached")
}

func TestSnapshotThenLive(t *testing.T) {
	e := serve(t, "a", "b")
	h := newHandler()
	cl, c, _ := connect(t, e, h)
	if cl.Info.Node != "node-a" || cl.Info.Version != nodeproto.Version || cl.Info.OrigDst != nil {
		t.Errorf("hello: %+v", cl.Info)
	}
	if got := h.snapshots; len(got) != 1 || !slices.Equal(got[0], []string{"a", "b"}) {
		t.Fatalf("snapshots %v", got)
	}
	if c.PeerPID() != os.Getpid() {
		t.Errorf("PeerPID = %d, want %d", c.PeerPID(), os.Getpid())
	}
	ctx := context.Background()
	ls, err := e.srv.AddPod(ctx, pod("c"), netnsFile(t, "c"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 {
		t.Fatalf("%d listeners", len(ls))
	}
	// The descriptor is ztunnel's listener: a connect to its address is
	// accepted by the handler's socket.
	fl, err := net.FileListener(ls[0])
	ls[0].Close()
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	want := h.lns["c"].Addr().String()
	h.mu.Unlock()
	if fl.Addr().String() != want {
		t.Errorf("listener %s, want %s", fl.Addr(), want)
	}
	fl.Close()
	if err := e.srv.RemovePod(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	_, hasA := h.pods["a"]
	_, hasC := h.pods["c"]
	h.mu.Unlock()
	if hasA || !hasC {
		t.Errorf("pods after remove: %v", h.pods)
	}
	h.mu.Lock()
	h.failAdd = "d"
	h.mu.Unlock()
	if _, err := e.srv.AddPod(ctx, pod("d"), netnsFile(t, "d")); err == nil || !strings.Contains(err.Error(), "no room at the inn") {
		t.Errorf("failing AddPod: %v", err)
	}
	h.close()
}

func TestNotConnectedAndReconnect(t *testing.T) {
	e := serve(t, "a")
	ctx := context.Background()
	if _, err := e.srv.AddPod(ctx, pod("x"), netnsFile(t, "x")); !errors.Is(err, nodeproto.ErrNotConnected) {
		t.Fatalf("AddPod without ztunnel: %v", err)
	}
	h1 := newHandler()
	_, _, stop1 := connect(t, e, h1)
	stop1()
	waitFor(t, func() bool { return !e.srv.Connected() })
	if err := e.srv.RemovePod(ctx, "a"); !errors.Is(err, nodeproto.ErrNotConnected) {
		t.Fatalf("RemovePod after disconnect: %v", err)
	}
	// A restarted ztunnel gets the snapshot again.
	h2 := newHandler()
	connect(t, e, h2)
	if len(h2.snapshots) != 1 || !slices.Equal(h2.snapshots[0], []string{"a"}) {
		t.Errorf("snapshot after reconnect: %v", h2.snapshots)
	}
	// A newer connection replaces an older one.
	h3 := newHandler()
	connect(t, e, h3)
	if _, err := e.srv.AddPod(ctx, pod("n"), netnsFile(t, "n")); err != nil {
		t.Fatal(err)
	}
	h3.mu.Lock()
	_, ok := h3.pods["n"]
	h3.mu.Unlock()
	if !ok {
		t.Error("request did not go to the newest connection")
	}
	for _, h := range []*handler{h1, h2, h3} {
		h.close()
	}
}

func TestRunReconnects(t *testing.T) {
	e := serve(t, "a")
	h := newHandler()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	infos := make(chan nodeproto.ServerInfo, 4)
	go nodeproto.Run(ctx, e.path, h, 20*time.Millisecond, func(i nodeproto.ServerInfo) { infos <- i })
	<-h.snapDone
	waitFor(t, e.srv.Connected)
	c := e.srv.Active()
	// Kill the connection from the agent side: Run dials again.
	e.srv.Close()
	<-c.Done()
	serveAt(t, e.path, "a", "b")
	select {
	case <-h.snapDone:
	case <-time.After(5 * time.Second):
		t.Fatal("no reconnect")
	}
	h.mu.Lock()
	snaps := h.snapshots
	h.mu.Unlock()
	if len(snaps) != 2 || !slices.Equal(snaps[1], []string{"a", "b"}) {
		t.Errorf("snapshots %v", snaps)
	}
	h.close()
}

func serveAt(t *testing.T, path string, snapshot ...string) *nodeproto.Server {
	t.Helper()
	srv, err := nodeproto.Listen(nodeproto.ServerOptions{Path: path, OnConnect: func(ctx context.Context, c *nodeproto.Conn) error {
		for _, uid := range snapshot {
			ls, err := c.AddPod(ctx, pod(uid), netnsFile(t, uid))
			if err != nil {
				return err
			}
			for _, f := range ls {
				f.Close()
			}
		}
		return c.SnapshotDone(ctx)
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go srv.Serve(ctx)
	t.Cleanup(func() { cancel(); srv.Close() })
	return srv
}

func TestVersionMismatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte(`{"type":"hello","version":99,"node":"future"}`))
		b := make([]byte, 1024)
		n, _ := c.Read(b)
		c.Write(b[:n]) // echo the refusal back for the test to see
	}()
	_, err = nodeproto.Dial(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Fatalf("Dial to a version-99 agent: %v", err)
	}
}

func TestPodValidate(t *testing.T) {
	for _, p := range []nodeproto.Pod{{}, {UID: "u"}, {UID: "u", Namespace: "n"}} {
		if p.Validate() == nil {
			t.Errorf("%+v valid", p)
		}
	}
	if err := pod("u").Validate(); err != nil {
		t.Error(err)
	}
}

// TestOrigDstTable reads a BPF map with the wr_odst layout through the
// descriptor passed in hello (root: creates a map).
func TestOrigDstTable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("nodeproto: creating a BPF map needs root (CAP_BPF)")
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 32, ValueSize: 24, MaxEntries: 4})
	if err != nil {
		t.Skipf("nodeproto: BPF hash map not available: %v", err)
	}
	defer m.Close()
	key := make([]byte, 32)
	binary.NativeEndian.PutUint64(key, 77)
	a := netip.MustParseAddr("127.0.0.1").As16() // IPv4 mapped
	copy(key[8:24], a[:])
	binary.NativeEndian.PutUint32(key[24:], 40000)
	val := make([]byte, 24)
	d := netip.MustParseAddr("203.0.113.9").As16()
	copy(val, d[:])
	binary.NativeEndian.PutUint16(val[16:], 8443)
	binary.NativeEndian.PutUint16(val[18:], 2)
	if err := m.Put(key, val); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "zt.sock")
	srv, err := nodeproto.Listen(nodeproto.ServerOptions{
		Path: path,
		OrigDst: func() (*os.File, error) {
			fd, err := syscall.Dup(m.FD())
			if err != nil {
				return nil, err
			}
			return os.NewFile(uintptr(fd), "map"), nil
		},
		OnConnect: func(ctx context.Context, c *nodeproto.Conn) error { return c.SnapshotDone(ctx) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx)
	defer srv.Close()
	cl, err := nodeproto.Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if cl.Info.OrigDst == nil {
		t.Fatal("no original-destination table in hello")
	}
	got, err := cl.Info.OrigDst.Lookup(77, netip.MustParseAddrPort("127.0.0.1:40000"))
	if err != nil || got != netip.MustParseAddrPort("203.0.113.9:8443") {
		t.Errorf("Lookup = %v, %v", got, err)
	}
	if _, err := cl.Info.OrigDst.Lookup(78, netip.MustParseAddrPort("127.0.0.1:40000")); !errors.Is(err, nodeproto.ErrNoOrigDst) {
		t.Errorf("Lookup of another netns: %v", err)
	}
}
