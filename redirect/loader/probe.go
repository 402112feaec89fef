package loader

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/warren-mesh/warren/redirect"
)

// Probe checks, without attaching anything, that the kernel and this
// process can run capture: the program and map types, the helpers the
// programs call, and the capabilities to load them. The error wraps
// redirect.ErrNotSupported and names the first missing feature.
func Probe() error {
	// Without CAP_BPF, RemoveMemlock cannot tell whether the kernel
	// charges BPF memory to the cgroup and fails too: report the
	// capabilities first (below), memlock only if everything else works.
	memErr := rlimit.RemoveMemlock()
	if err := probeFeatures(); err != nil {
		return err
	}
	if memErr != nil {
		if errors.Is(memErr, unix.EPERM) {
			return redirect.NotSupported("CAP_SYS_RESOURCE or kernel >= 5.11 (RLIMIT_MEMLOCK for BPF maps)", memErr)
		}
		return fmt.Errorf("loader: %w", memErr)
	}
	return nil
}

func probeFeatures() error {
	progs := []struct {
		t    ebpf.ProgramType
		name string
	}{
		{ebpf.CGroupSockAddr, "cgroup/connect4 and connect6 programs (BPF_PROG_TYPE_CGROUP_SOCK_ADDR)"},
		{ebpf.SockOps, "sock_ops programs (BPF_PROG_TYPE_SOCK_OPS)"},
		{ebpf.SkLookup, "sk_lookup programs (BPF_PROG_TYPE_SK_LOOKUP, kernel >= 5.9)"},
	}
	for _, p := range progs {
		if err := classifyProbe(p.name, features.HaveProgramType(p.t)); err != nil {
			return err
		}
	}
	maps := []struct {
		t    ebpf.MapType
		name string
	}{
		{ebpf.SkStorage, "socket local storage maps (BPF_MAP_TYPE_SK_STORAGE)"},
		{ebpf.SockHash, "SOCKHASH maps"},
		{ebpf.LPMTrie, "LPM trie maps"},
		{ebpf.LRUHash, "LRU hash maps"},
		{ebpf.PerCPUArray, "per-CPU array maps"},
	}
	for _, m := range maps {
		if err := classifyProbe(m.name, features.HaveMapType(m.t)); err != nil {
			return err
		}
	}
	helpers := []struct {
		t    ebpf.ProgramType
		fn   asm.BuiltinFunc
		name string
	}{
		{ebpf.CGroupSockAddr, asm.FnGetNetnsCookie, "bpf_get_netns_cookie in cgroup/connect programs"},
		{ebpf.CGroupSockAddr, asm.FnGetCurrentCgroupId, "bpf_get_current_cgroup_id in cgroup/connect programs"},
		{ebpf.CGroupSockAddr, asm.FnSkStorageGet, "bpf_sk_storage_get in cgroup/connect programs"},
		{ebpf.SockOps, asm.FnGetNetnsCookie, "bpf_get_netns_cookie in sock_ops programs"},
		{ebpf.SockOps, asm.FnSkStorageGet, "bpf_sk_storage_get in sock_ops programs"},
		{ebpf.SkLookup, asm.FnSkAssign, "bpf_sk_assign in sk_lookup programs"},
	}
	for _, h := range helpers {
		if err := classifyProbe(h.name, features.HaveProgramHelper(h.t, h.fn)); err != nil {
			return err
		}
	}
	return nil
}

func classifyProbe(name string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ebpf.ErrNotSupported):
		return redirect.NotSupported(name, err)
	case errors.Is(err, unix.EPERM):
		return redirect.NotSupported("CAP_BPF and CAP_NET_ADMIN (probing "+name+": permission denied)", err)
	}
	return fmt.Errorf("loader: probing %s: %w", name, err)
}

// EnsureBPFFS makes sure dir lies on a bpffs, mounting one at /sys/fs/bpf
// if none is mounted there.
func EnsureBPFFS(dir string) error {
	mounts, err := readMounts()
	if err != nil {
		return err
	}
	if onBPFFS(mounts, dir) {
		return nil
	}
	const std = "/sys/fs/bpf"
	if dir != std && !strings.HasPrefix(dir, std+"/") {
		return redirect.NotSupported(fmt.Sprintf("bpffs (pin directory %s is not on a bpf filesystem)", dir), nil)
	}
	if err := os.MkdirAll(std, 0o755); err != nil {
		return redirect.NotSupported("bpffs at "+std, err)
	}
	if err := unix.Mount("bpf", std, "bpf", 0, "mode=0700"); err != nil && !errors.Is(err, unix.EBUSY) {
		return redirect.NotSupported("bpffs (mount -t bpf bpf "+std+")", err)
	}
	return nil
}

func onBPFFS(mounts []Mount, dir string) bool {
	dir = filepath.Clean(dir)
	best := ""
	fstype := ""
	for _, m := range mounts {
		if (dir == m.Point || strings.HasPrefix(dir, strings.TrimSuffix(m.Point, "/")+"/")) && len(m.Point) >= len(best) {
			best, fstype = m.Point, m.FSType
		}
	}
	return fstype == "bpf"
}

func native32(b []byte) uint32       { return binary.NativeEndian.Uint32(b) }
func native64(b []byte) uint64       { return binary.NativeEndian.Uint64(b) }
func putNative64(b []byte, v uint64) { binary.NativeEndian.PutUint64(b, v) }
