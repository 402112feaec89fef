package loader_test

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/warren-mesh/warren/redirect"
	"github.com/warren-mesh/warren/redirect/loader"
)

const hybrid = `22 27 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 22 0:25 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:26 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:27 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
35 30 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
40 22 0:35 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:20 - bpf bpf rw,mode=700
`

const unified = `22 27 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 22 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
41 30 0:25 /kubelet /var/lib/my\040cgroup rw,relatime shared:9 - cgroup2 cgroup2 rw
42 30 0:25 / /cg rw,relatime shared:9 - cgroup2 cgroup2 rw
`

func mounts(t *testing.T, s string) []loader.Mount {
	t.Helper()
	m, err := loader.ParseMountinfo(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFindCgroup2(t *testing.T) {
	for name, c := range map[string]struct{ in, want string }{
		"hybrid":  {hybrid, "/sys/fs/cgroup/unified"},
		"unified": {unified, "/sys/fs/cgroup"},
	} {
		got, err := loader.FindCgroup2(mounts(t, c.in))
		if err != nil || got != c.want {
			t.Errorf("%s: FindCgroup2 = %q, %v; want %q", name, got, err, c.want)
		}
	}
	m := mounts(t, unified)
	if m[2].Point != "/var/lib/my cgroup" {
		t.Errorf("octal escape not undone: %q", m[2].Point)
	}
	v1only := strings.ReplaceAll(hybrid, "cgroup2 cgroup2", "tmpfs tmpfs")
	_, err := loader.FindCgroup2(mounts(t, v1only))
	if !errors.Is(err, redirect.ErrNotSupported) || !strings.Contains(err.Error(), "cgroup v2") {
		t.Errorf("without cgroup2: %v, want ErrNotSupported naming cgroup v2", err)
	}
	if _, err := loader.ParseMountinfo(strings.NewReader("garbage\n")); err == nil {
		t.Error("malformed mountinfo accepted")
	}
}

func TestCheckNetClsPrio(t *testing.T) {
	if err := loader.CheckNetClsPrio(mounts(t, hybrid)); err != nil {
		t.Errorf("hybrid without net_cls: %v", err)
	}
	withNetCls := hybrid + "36 30 0:31 / /sys/fs/cgroup/net_cls,net_prio rw,relatime shared:15 - cgroup cgroup rw,net_cls,net_prio\n"
	err := loader.CheckNetClsPrio(mounts(t, withNetCls))
	if !errors.Is(err, redirect.ErrNotSupported) || !strings.Contains(err.Error(), "net_cls") {
		t.Errorf("with net_cls: %v", err)
	}
}

func TestParseCgroupV2Path(t *testing.T) {
	p, err := loader.ParseCgroupV2Path([]byte("4:memory:/x\n0::/kubepods/pod1/c\n"))
	if err != nil || p != "/kubepods/pod1/c" {
		t.Errorf("ParseCgroupV2Path = %q, %v", p, err)
	}
	if _, err := loader.ParseCgroupV2Path([]byte("4:memory:/x\n")); err == nil {
		t.Error("v1-only membership accepted")
	}
}

func TestThisMachine(t *testing.T) {
	// Whatever the layout here, the cgroup2 mount is found and this
	// process's cgroup resolves under it.
	root, err := loader.Cgroup2Mount()
	if err != nil {
		t.Skip(err.Error())
	}
	cg, err := loader.CgroupOfPID(os.Getpid())
	if err != nil || !strings.HasPrefix(cg, root) {
		t.Errorf("CgroupOfPID = %q, %v (root %s)", cg, err, root)
	}
	if id, err := loader.CgroupID(cg); err != nil || id == 0 {
		t.Errorf("CgroupID = %d, %v", id, err)
	}
}

func TestPodConfig(t *testing.T) {
	a := loader.PodConfig{
		ExcludeOutboundPorts: []uint16{9000, 22, 9000},
		ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8"), netip.MustParsePrefix("::ffff:192.0.2.0/120"), netip.MustParsePrefix("10.0.0.0/8")},
	}
	n := a.Normalize()
	if len(n.ExcludeOutboundPorts) != 2 || n.ExcludeOutboundPorts[0] != 22 {
		t.Errorf("ports %v", n.ExcludeOutboundPorts)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.0/24")}
	if len(n.ExcludeOutboundCIDRs) != 2 || n.ExcludeOutboundCIDRs[0] != want[0] || n.ExcludeOutboundCIDRs[1] != want[1] {
		t.Errorf("CIDRs %v, want %v", n.ExcludeOutboundCIDRs, want)
	}
	if !a.Equal(n) || a.Equal(loader.PodConfig{}) {
		t.Error("Equal")
	}
	if (loader.PodConfig{ExcludeInboundPorts: []uint16{0}}).Validate() == nil {
		t.Error("port 0 accepted")
	}
	if (loader.PodConfig{ExcludeOutboundCIDRs: []netip.Prefix{{}}}).Validate() == nil {
		t.Error("invalid prefix accepted")
	}
}

func TestFake(t *testing.T) {
	f := loader.NewFake()
	if _, err := f.OpenNetns("/nope"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unknown netns: %v", err)
	}
	f.AddNetns("/ns/a", 7)
	ns, err := f.OpenNetns("/ns/a")
	if err != nil || ns.Cookie != 7 {
		t.Fatalf("OpenNetns = %+v, %v", ns, err)
	}
	defer ns.Close()
	if err := f.Enrol(ns, loader.PodConfig{ExcludeInboundPorts: []uint16{0}}, nil); err == nil {
		t.Error("invalid config enrolled")
	}
	if err := f.Enrol(ns, loader.PodConfig{}, nil); err != nil {
		t.Fatal(err)
	}
	f.FailEnrol(7, errors.New("boom"))
	if err := f.Enrol(ns, loader.PodConfig{}, nil); err == nil {
		t.Error("FailEnrol ignored")
	}
	if err := f.Release(7); err != nil {
		t.Fatal(err)
	}
	if m, _ := f.Enrolled(); len(m) != 0 {
		t.Errorf("Enrolled after release: %v", m)
	}
	if ops := f.Ops(); len(ops) != 2 || ops[0] != "enrol 7" || ops[1] != "release 7" {
		t.Errorf("ops %v", ops)
	}
}
