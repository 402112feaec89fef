package loader_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/warren-mesh/warren/redirect"
	"github.com/warren-mesh/warren/redirect/internal/podtest"
	"github.com/warren-mesh/warren/redirect/loader"
	"github.com/warren-mesh/warren/redirect/nodeproto"
)

func TestMain(m *testing.M) { podtest.Main(m) }

// world is one node netns, one pod netns joined by a veth pair, the test's
// attach cgroup with a pod cgroup below it, and a Loader attached there.
type world struct {
	t       *testing.T
	node    *podtest.Netns
	pod     *podtest.Netns
	link    podtest.Link
	attach  *podtest.Cgroup
	podCg   *podtest.Cgroup
	pin     string
	l       *loader.Loader
	ns      loader.Netns
	app     *podtest.Proc
	table   *nodeproto.OrigDstTable
	inbound *net.TCPListener

	getsockopt bool
}

func newWorld(t *testing.T) *world { return newWorldWith(t, false, true) }

// newWorldWith builds a world; getsockopt also attaches the
// cgroup/getsockopt program, listeners opens the fake ztunnel's listeners
// in the pod (the outbound ones in this process, outside the cgroup tree).
func newWorldWith(t *testing.T, getsockopt, listeners bool) *world {
	podtest.Require(t)
	w := &world{t: t, getsockopt: getsockopt}
	w.node = podtest.NewNetns(t)
	w.pod = podtest.NewNetns(t)
	w.link = podtest.Connect(t, w.pod, w.node, 1)
	w.attach = podtest.NewCgroup(t, nil)
	w.podCg = podtest.NewCgroup(t, w.attach)
	w.pin = podtest.PinPath(t)
	w.open()
	t.Cleanup(func() {
		if w.l != nil {
			w.l.Uninstall()
		}
	})
	ns, err := loader.OpenNetns(w.pod.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	w.ns = ns
	// A fake ztunnel's listeners in the pod: outbound answers with the
	// original destination looked up the way ztunnel does.
	f, err := w.l.OriginalDst()
	if err != nil {
		t.Fatal(err)
	}
	w.table = nodeproto.NewOrigDstTable(f)
	t.Cleanup(func() { w.table.Close() })
	if !listeners {
		w.app = podtest.StartProc(t, w.pod, w.podCg)
		return w
	}
	for _, a := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:15001"}, {"tcp6", "[::1]:15001"}} {
		ln, err := podtest.ListenIn(ns.File, a.network, a.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go acceptLoop(ln, func(c net.Conn) string {
			orig, err := w.table.Lookup(ns.Cookie, c.RemoteAddr().(*net.TCPAddr).AddrPort())
			if err != nil {
				return "outbound error=" + err.Error()
			}
			return "outbound orig=" + orig.String()
		})
	}
	in, err := podtest.ListenIn(ns.File, "tcp", "[::]:15006")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	go acceptLoop(in, func(c net.Conn) string {
		return fmt.Sprintf("inbound local=%s peer=%s", c.LocalAddr(), c.RemoteAddr())
	})
	w.inbound = in
	// Remote servers in the node netns and the app in the pod.
	podtest.Serve(t, w.node, "tcp", ":9000", "remote")
	podtest.Serve(t, w.pod, "tcp", ":8080", "app")
	w.app = podtest.StartProc(t, w.pod, w.podCg)
	return w
}

func (w *world) open() {
	w.t.Helper()
	l, err := loader.Open(loader.Options{Cgroup: w.attach.Path, PinPath: w.pin, AttachGetsockopt: w.getsockopt})
	if err != nil {
		w.t.Fatalf("Open: %v", err)
	}
	w.l = l
}

func (w *world) enrol(cfg loader.PodConfig) {
	w.t.Helper()
	var files []*os.File
	if w.inbound != nil {
		f, err := w.inbound.File()
		if err != nil {
			w.t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	if err := w.l.Enrol(w.ns, cfg, files); err != nil {
		w.t.Fatalf("Enrol: %v", err)
	}
}

func acceptLoop(ln net.Listener, line func(net.Conn) string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write([]byte(line(c) + "\n"))
		c.Close()
	}
}

func expect(t *testing.T, what string, r podtest.DialResult, prefix string) {
	t.Helper()
	if r.Err != "" || !strings.HasPrefix(r.Data, prefix) {
		t.Errorf("%s: got %v, want %q…", what, r, prefix)
	}
}

func TestCaptureOutbound(t *testing.T) {
	w := newWorld(t)
	remote := netip.AddrPortFrom(w.link.B4, 9000).String()
	expect(t, "before enrol", w.app.Dial("tcp", remote), "remote")
	w.enrol(loader.PodConfig{})
	for _, c := range []struct{ network, addr, orig string }{
		{"tcp4", "203.0.113.7:80", "203.0.113.7:80"},
		{"tcp4", remote, remote},
		{"tcp6", "[2001:db8::7]:443", "[2001:db8::7]:443"},
		{"tcp6raw", "[::ffff:198.51.100.9]:8443", "198.51.100.9:8443"}, // IPv4-mapped via connect6
		{"tcp4", netip.AddrPortFrom(w.link.A4, 8080).String(), netip.AddrPortFrom(w.link.A4, 8080).String()},
	} {
		expect(t, c.network+" "+c.addr, w.app.Dial(c.network, c.addr), "outbound orig="+c.orig)
	}
	// Loopback is never captured.
	expect(t, "loopback", w.app.Dial("tcp4", "127.0.0.1:8080"), "app")
	expect(t, "loopback v6", w.app.Dial("tcp6", "[::1]:8080"), "app")
	st, err := w.l.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st["captured_ipv4"] < 4 || st["captured_ipv6"] < 1 || st["original_dst_recorded"] < 5 {
		t.Errorf("stats %v", st)
	}
}

func TestUnenrolledPodUntouched(t *testing.T) {
	w := newWorld(t)
	w.enrol(loader.PodConfig{})
	// A second pod in the same cgroup tree, not enrolled.
	other := podtest.NewNetns(t)
	lk := podtest.Connect(t, other, w.node, 2)
	proc := podtest.StartProc(t, other, w.podCg)
	expect(t, "unenrolled pod", proc.Dial("tcp", netip.AddrPortFrom(w.link.B4, 9000).String()), "remote local="+netip.AddrPortFrom(w.link.B4, 9000).String())
	expect(t, "unenrolled pod v6", proc.Dial("tcp", netip.AddrPortFrom(w.link.B6, 9000).String()), "remote")
	// Inbound to it is not steered either.
	if r := podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(lk.A4, 9999).String()); r.Err == "" {
		t.Errorf("inbound to a closed port of an unenrolled pod: %v, want refused", r)
	}
	expect(t, "enrolled pod still captured", w.app.Dial("tcp", "192.0.2.1:1"), "outbound orig=192.0.2.1:1")
}

func TestReleaseLive(t *testing.T) {
	w := newWorld(t)
	remote := netip.AddrPortFrom(w.link.B4, 9000).String()
	w.enrol(loader.PodConfig{})
	expect(t, "enrolled", w.app.Dial("tcp", remote), "outbound orig="+remote)
	if err := w.l.Release(w.ns.Cookie); err != nil {
		t.Fatal(err)
	}
	expect(t, "released", w.app.Dial("tcp", remote), "remote")
	expect(t, "released inbound", podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(w.link.A4, 8080).String()), "app")
	if err := w.l.Release(w.ns.Cookie); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	w.enrol(loader.PodConfig{})
	expect(t, "re-enrolled, same process", w.app.Dial("tcp", remote), "outbound orig="+remote)
	if got, _ := w.l.Enrolled(); len(got) != 1 {
		t.Errorf("Enrolled = %v", got)
	}
}

func TestExclusions(t *testing.T) {
	w := newWorld(t)
	podtest.AddAddr(t, w.node, netip.MustParseAddr("198.51.100.10"))
	podtest.Serve(t, w.node, "tcp", ":9100", "remote9100")
	cfg := loader.PodConfig{
		ExcludeOutboundPorts: []uint16{9100},
		ExcludeInboundPorts:  []uint16{8080},
		ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("fd77::1:0/112")},
	}
	w.enrol(cfg)
	expect(t, "excluded port", w.app.Dial("tcp", netip.AddrPortFrom(w.link.B4, 9100).String()), "remote9100")
	expect(t, "excluded CIDR v4", w.app.Dial("tcp", "198.51.100.10:9000"), "remote")
	expect(t, "excluded CIDR v6", w.app.Dial("tcp", netip.AddrPortFrom(w.link.B6, 9000).String()), "remote")
	expect(t, "not excluded", w.app.Dial("tcp", netip.AddrPortFrom(w.link.B4, 9000).String()), "outbound orig=")
	expect(t, "excluded inbound port", podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(w.link.A4, 8080).String()), "app")
	expect(t, "inbound not excluded", podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(w.link.A4, 8081).String()), "inbound")
	// Dropping the exclusions is live too.
	w.enrol(loader.PodConfig{ExcludeOutboundPorts: []uint16{9100}})
	expect(t, "CIDR no longer excluded", w.app.Dial("tcp", "198.51.100.10:9000"), "outbound orig=198.51.100.10:9000")
	expect(t, "inbound port no longer excluded", podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(w.link.A4, 8080).String()), "inbound")
	got, _ := w.l.Enrolled()
	if c := got[w.ns.Cookie]; len(c.ExcludeOutboundCIDRs) != 0 || len(c.ExcludeOutboundPorts) != 1 {
		t.Errorf("Enrolled config %+v", c)
	}
}

func TestInboundSteering(t *testing.T) {
	w := newWorld(t)
	podtest.Serve(t, w.pod, "tcp", ":15008", "hbone")
	w.enrol(loader.PodConfig{})
	for _, dst := range []netip.AddrPort{
		netip.AddrPortFrom(w.link.A4, 8080),  // the app's port
		netip.AddrPortFrom(w.link.A4, 12345), // nothing listens
		netip.AddrPortFrom(w.link.A6, 8080),
	} {
		expect(t, "inbound "+dst.String(), podtest.DialFrom(w.node, "tcp", "", dst.String()), "inbound local="+dst.String())
	}
	expect(t, "HBONE port", podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(w.link.A4, 15008).String()), "hbone")
	// ztunnel's passthrough to the app from 127.0.0.6 inside the pod.
	r := podtest.DialFrom(w.pod, "tcp4", "127.0.0.6:0", netip.AddrPortFrom(w.link.A4, 8080).String())
	expect(t, "passthrough from 127.0.0.6", r, "app local="+netip.AddrPortFrom(w.link.A4, 8080).String()+" peer=127.0.0.6:")
	// Without a listener the pod's inbound fails closed, never to the app.
	w.inbound.Close()
	if r := podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(w.link.A4, 8080).String()); r.Err == "" {
		t.Errorf("inbound without ztunnel listener: %v, want refused", r)
	}
}

func TestProbeSources(t *testing.T) {
	w := newWorld(t)
	w.enrol(loader.PodConfig{})
	other := podtest.NewNetns(t)
	lk := podtest.Connect(t, w.pod, other, 3)
	app := netip.AddrPortFrom(w.link.A4, 8080).String()
	expect(t, "node before", podtest.DialFrom(w.node, "tcp", "", app), "inbound")
	if err := w.l.SetProbeSources([]netip.Addr{w.link.B4, w.link.B6}); err != nil {
		t.Fatal(err)
	}
	expect(t, "node (kubelet probe)", podtest.DialFrom(w.node, "tcp", "", app), "app")
	expect(t, "node v6", podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(w.link.A6, 8080).String()), "app")
	expect(t, "other source", podtest.DialFrom(other, "tcp", "", netip.AddrPortFrom(lk.A4, 8080).String()), "inbound")
	if err := w.l.SetProbeSources(nil); err != nil {
		t.Fatal(err)
	}
	expect(t, "node after clearing", podtest.DialFrom(w.node, "tcp", "", app), "inbound")
}

func TestDNSOverUDPUntouched(t *testing.T) {
	w := newWorld(t)
	w.enrol(loader.PodConfig{})
	server := netip.AddrPortFrom(w.link.B4, 53).String()
	podtest.ServeDNS(t, w.node, server, netip.MustParseAddr("192.0.2.53"))
	r := w.app.DNS(server, "svc.test.")
	if r.Err != "" || r.Data != "192.0.2.53" || r.Remote != server {
		t.Errorf("DNS from enrolled pod: %v", r)
	}
	expect(t, "TCP to the DNS server is captured", w.app.Dial("tcp", server), "outbound orig="+server)
}

func TestSkipCgroupZtunnel(t *testing.T) {
	w := newWorld(t)
	w.enrol(loader.PodConfig{})
	ztCg := podtest.NewCgroup(t, w.attach)
	zt := podtest.StartProc(t, w.pod, ztCg)
	remote := netip.AddrPortFrom(w.link.B4, 9000).String()
	expect(t, "ztunnel before skip: looped", zt.Dial("tcp", remote), "outbound")
	if err := w.l.SetSkipCgroups([]uint64{ztCg.ID}); err != nil {
		t.Fatal(err)
	}
	expect(t, "ztunnel's own connect", zt.Dial("tcp", remote), "remote")
	expect(t, "app still captured", w.app.Dial("tcp", remote), "outbound orig="+remote)
	st, _ := w.l.Stats()
	if st["skipped_ztunnel"] == 0 {
		t.Errorf("stats %v", st)
	}
}

// TestReadopt: the Loader's process goes away (Close, no Uninstall) and
// capture goes on from the pins; a new Open re-adopts the pod.
func TestReadopt(t *testing.T) {
	w := newWorld(t)
	remote := netip.AddrPortFrom(w.link.B4, 9000).String()
	cfg := loader.PodConfig{ExcludeOutboundPorts: []uint16{9100}, ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}
	w.enrol(cfg)
	if err := w.l.Close(); err != nil {
		t.Fatal(err)
	}
	w.l = nil
	expect(t, "agent gone", w.app.Dial("tcp", remote), "outbound orig="+remote)
	expect(t, "agent gone, inbound", podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(w.link.A4, 8080).String()), "inbound")
	w.open()
	got, err := w.l.Enrolled()
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := got[w.ns.Cookie]; !ok || !c.Equal(cfg) {
		t.Fatalf("re-adopted %v, want %v", got, cfg)
	}
	expect(t, "re-adopted", w.app.Dial("tcp", remote), "outbound orig="+remote)
	// Enrol of an adopted pod refreshes its sk_lookup program in place.
	if err := w.l.Enrol(w.ns, cfg, nil); err != nil {
		t.Fatal(err)
	}
	expect(t, "refreshed inbound", podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(w.link.A4, 8080).String()), "inbound")
	if err := w.l.Release(w.ns.Cookie); err != nil {
		t.Fatal(err)
	}
	expect(t, "released after re-adopt", w.app.Dial("tcp", remote), "remote")
	if err := w.l.Uninstall(); err != nil {
		t.Fatal(err)
	}
	w.l = nil
	if _, err := os.Stat(w.pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pins left after Uninstall: %v", err)
	}
}

// TestNotSupportedWithoutCapabilities: without capabilities Open refuses
// with ErrNotSupported naming them.
func TestNotSupportedWithoutCapabilities(t *testing.T) {
	w := newWorld(t)
	p := podtest.StartProcWrapped(t, w.pod, w.podCg, "setpriv", "--bounding-set=-all", "--inh-caps=-all", "--")
	ns, err := p.OpenLoader(w.attach.Path, podtest.PinPath(t))
	if err == nil || !ns || !strings.Contains(err.Error(), "CAP_BPF") {
		t.Fatalf("Open without capabilities: %v (not supported: %v), want ErrNotSupported naming CAP_BPF", err, ns)
	}
}

func TestOpenRequiresCgroup(t *testing.T) {
	podtest.Require(t)
	if _, err := loader.Open(loader.Options{PinPath: podtest.PinPath(t)}); err == nil {
		t.Fatal("Open without Cgroup succeeded")
	}
	_, err := loader.Open(loader.Options{Cgroup: "/nonexistent-" + podtest.Name(""), PinPath: podtest.PinPath(t)})
	if err == nil {
		t.Fatal("Open with a missing cgroup succeeded")
	}
	if errors.Is(err, redirect.ErrNotSupported) {
		t.Fatalf("missing cgroup directory reported as ErrNotSupported: %v", err)
	}
}

// TestGetsockoptOriginalDst: with the optional cgroup/getsockopt program
// attached above the accepting process, getsockopt(SO_ORIGINAL_DST) on the
// accepted socket answers what the map holds, as iptables REDIRECT would.
func TestGetsockoptOriginalDst(t *testing.T) {
	w := newWorldWith(t, true, false)
	w.enrol(loader.PodConfig{})
	found, _, _, err := w.app.OrigDst("203.0.113.7:80", filepath.Join(w.pin, "wr_odst"), w.ns.Cookie, 10)
	if err != nil {
		t.Fatal(err)
	}
	if found != "getsockopt=203.0.113.7:80 map=203.0.113.7:80" {
		t.Errorf("original destination: %s", found)
	}
	st, _ := w.l.Stats()
	if st["getsockopt_answered"] < 11 {
		t.Errorf("stats %v", st)
	}
	// Without the program the same lookup fails.
	w2 := newWorldWith(t, false, false)
	w2.enrol(loader.PodConfig{})
	found, _, _, err = w2.app.OrigDst("203.0.113.7:80", filepath.Join(w2.pin, "wr_odst"), w2.ns.Cookie, 1)
	if err != nil || !strings.HasPrefix(found, "getsockopt=error:") || !strings.HasSuffix(found, "map=203.0.113.7:80") {
		t.Errorf("without the getsockopt program: %q %v", found, err)
	}
}

// TestReadoptFinishesHalfDoneWork: state of a pod whose capture was never
// switched on (the agent died mid-Enrol) is cleaned up by the next Open.
func TestReadoptFinishesHalfDoneWork(t *testing.T) {
	w := newWorld(t)
	w.enrol(loader.PodConfig{ExcludeOutboundPorts: []uint16{9100}, ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if err := w.l.Close(); err != nil {
		t.Fatal(err)
	}
	w.l = nil
	pods, err := ebpf.LoadPinnedMap(filepath.Join(w.pin, "wr_pods"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(w.ns.Cookie); err != nil {
		t.Fatal(err)
	}
	pods.Close()
	w.open()
	if got, _ := w.l.Enrolled(); len(got) != 0 {
		t.Errorf("Enrolled = %v", got)
	}
	for _, m := range []string{"wr_ports", "wr_cidrs", "wr_inbound"} {
		pm, err := ebpf.LoadPinnedMap(filepath.Join(w.pin, m), nil)
		if err != nil {
			t.Fatal(err)
		}
		var k []byte
		if err := pm.NextKey(nil, &k); !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.Errorf("%s still has entries (%v)", m, err)
		}
		pm.Close()
	}
	if ents, _ := os.ReadDir(filepath.Join(w.pin, "pods")); len(ents) != 0 {
		t.Errorf("pods/ still holds %d links", len(ents))
	}
	expect(t, "not captured", w.app.Dial("tcp", netip.AddrPortFrom(w.link.B4, 9000).String()), "remote")
	expect(t, "inbound not steered", podtest.DialFrom(w.node, "tcp", "", netip.AddrPortFrom(w.link.A4, 8080).String()), "app")
}
