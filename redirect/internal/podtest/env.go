package podtest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/warren-mesh/warren/redirect"
	"github.com/warren-mesh/warren/redirect/loader"
)

// Require skips t, naming what is missing, unless this process can build
// network namespaces and cgroups and load the capture programs.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("podtest: needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF) for network namespaces, cgroups and BPF")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("podtest: nsenter (util-linux) not found: pod processes cannot enter their netns")
	}
	if _, err := loader.Cgroup2Mount(); err != nil {
		t.Skip(err.Error())
	}
	if err := loader.EnsureBPFFS("/sys/fs/bpf"); err != nil {
		t.Skip(err.Error())
	}
	if err := loader.Probe(); err != nil {
		if errors.Is(err, redirect.ErrNotSupported) {
			t.Skip(err.Error())
		}
		t.Fatal(err)
	}
}

// Name returns prefix followed by 8 random hex digits.
func Name(prefix string) string {
	var b [4]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// PinPath returns a fresh bpffs directory for one test; cleanup removes
// whatever is pinned in it.
func PinPath(t testing.TB) string {
	t.Helper()
	p := filepath.Join("/sys/fs/bpf", Name("warren-test-"))
	t.Cleanup(func() { os.RemoveAll(p) })
	return p
}

// Netns is a named network namespace (/var/run/netns/<Name>).
type Netns struct {
	Name   string
	Path   string
	handle netns.NsHandle
	file   *os.File
}

// File returns an open handle on the namespace.
func (n *Netns) File() *os.File { return n.file }

// NewNetns creates a network namespace with loopback up.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	name := Name("wt-")
	errc := make(chan error, 1)
	var h netns.NsHandle
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		h, err = netns.NewNamed(name)
		if serr := netns.Set(orig); serr != nil {
			errc <- fmt.Errorf("restore netns: %w", serr) // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("podtest: netns %s: %v", name, err)
	}
	n := &Netns{Name: name, Path: filepath.Join("/var/run/netns", name), handle: h}
	t.Cleanup(func() {
		if n.file != nil {
			n.file.Close()
		}
		h.Close()
		netns.DeleteNamed(name)
	})
	f, err := os.Open(n.Path)
	if err != nil {
		t.Fatalf("podtest: %v", err)
	}
	n.file = f
	// No duplicate address detection: addresses are usable at once.
	err = loader.InNetns(f, func() error {
		for _, k := range []string{"all", "default"} {
			p := "/proc/sys/net/ipv6/conf/" + k + "/accept_dad"
			if err := os.WriteFile(p, []byte("0"), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("podtest: sysctl in %s: %v", name, err)
	}
	nh := n.netlink(t)
	lo, err := nh.LinkByName("lo")
	if err == nil {
		err = nh.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("podtest: lo up in %s: %v", name, err)
	}
	return n
}

func (n *Netns) netlink(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(n.handle)
	if err != nil {
		t.Fatalf("podtest: netlink in %s: %v", n.Name, err)
	}
	t.Cleanup(h.Close)
	return h
}

// Link is a veth pair between two namespaces, A side and B side.
type Link struct {
	AIf, BIf string
	A4, B4   netip.Addr // 10.77.<subnet>.2 and .1
	A6, B6   netip.Addr // fd77::<subnet>:2 and :1
}

// Connect joins a and b with a veth pair, addresses 10.77.<subnet>.0/24
// and fd77::<subnet>:0/112 (A .2, B .1), and routes a's default traffic
// through b. The addresses are only visible inside the two namespaces.
func Connect(t testing.TB, a, b *Netns, subnet uint8) Link {
	t.Helper()
	l := Link{
		AIf: fmt.Sprintf("wa%d", subnet), BIf: fmt.Sprintf("wb%d", subnet),
		A4: netip.AddrFrom4([4]byte{10, 77, subnet, 2}), B4: netip.AddrFrom4([4]byte{10, 77, subnet, 1}),
		A6: netip.MustParseAddr(fmt.Sprintf("fd77::%x:2", subnet)), B6: netip.MustParseAddr(fmt.Sprintf("fd77::%x:1", subnet)),
	}
	ha, hb := a.netlink(t), b.netlink(t)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.AIf}, PeerName: l.BIf, PeerNamespace: netlink.NsFd(int(b.handle))}
	if err := ha.LinkAdd(veth); err != nil {
		t.Fatalf("podtest: veth %s/%s: %v", l.AIf, l.BIf, err)
	}
	setup := func(h *netlink.Handle, ifname string, v4, v6 netip.Addr) netlink.Link {
		lk, err := h.LinkByName(ifname)
		if err != nil {
			t.Fatalf("podtest: %v", err)
		}
		for _, p := range []netip.Prefix{netip.PrefixFrom(v4, 24), netip.PrefixFrom(v6, 112)} {
			addr, _ := netlink.ParseAddr(p.String())
			if p.Addr().Is6() {
				addr.Flags = unix.IFA_F_NODAD
			}
			if err := h.AddrAdd(lk, addr); err != nil {
				t.Fatalf("podtest: address %v on %s: %v", p, ifname, err)
			}
		}
		if err := h.LinkSetUp(lk); err != nil {
			t.Fatalf("podtest: %s up: %v", ifname, err)
		}
		return lk
	}
	la := setup(ha, l.AIf, l.A4, l.A6)
	setup(hb, l.BIf, l.B4, l.B6)
	// Wait for carrier on both ends: packets sent before are dropped and
	// cost a 1 s SYN retransmission.
	for _, c := range []struct {
		h    *netlink.Handle
		name string
	}{{ha, l.AIf}, {hb, l.BIf}} {
		deadline := time.Now().Add(3 * time.Second)
		for {
			lk, err := c.h.LinkByName(c.name)
			if err == nil && lk.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("podtest: %s has no carrier", c.name)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	for _, gw := range []netip.Addr{l.B4, l.B6} {
		r := &netlink.Route{LinkIndex: la.Attrs().Index, Gw: gw.AsSlice()}
		if err := ha.RouteAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
			t.Fatalf("podtest: default route via %v: %v", gw, err)
		}
	}
	return l
}

// AddAddr adds an extra address (e.g. a "remote service" IP) to lo in n.
func AddAddr(t testing.TB, n *Netns, a netip.Addr) {
	t.Helper()
	h := n.netlink(t)
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	bits := 32
	if a.Is6() {
		bits = 128
	}
	addr, _ := netlink.ParseAddr(netip.PrefixFrom(a, bits).String())
	if a.Is6() {
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(lo, addr); err != nil {
		t.Fatalf("podtest: address %v: %v", a, err)
	}
}

// Cgroup is a cgroup v2 directory the test owns.
type Cgroup struct {
	Path string
	ID   uint64
}

// NewCgroup creates a cgroup below parent (the cgroup v2 root if nil).
func NewCgroup(t testing.TB, parent *Cgroup) *Cgroup {
	t.Helper()
	return NewCgroupNamed(t, parent, Name("warren-test-"))
}

// UID returns a random pod uid (UUID form).
func UID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// NewCgroupNamed creates the cgroup parent/name, e.g. "pod<uid>" as
// kubelet names a pod's cgroup.
func NewCgroupNamed(t testing.TB, parent *Cgroup, name string) *Cgroup {
	t.Helper()
	var base string
	if parent != nil {
		base = parent.Path
	} else {
		root, err := loader.Cgroup2Mount()
		if err != nil {
			t.Skip(err.Error())
		}
		base = root
	}
	p := filepath.Join(base, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatalf("podtest: cgroup: %v", err)
	}
	t.Cleanup(func() {
		// Processes of this test are killed by earlier cleanups; give the
		// kernel a moment to empty the cgroup.
		for i := 0; i < 100; i++ {
			if err := os.Remove(p); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("podtest: cgroup %s not removable", p)
	})
	id, err := loader.CgroupID(p)
	if err != nil {
		t.Fatal(err)
	}
	return &Cgroup{Path: p, ID: id}
}
