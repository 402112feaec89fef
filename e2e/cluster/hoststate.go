package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Host state that the cluster's components change outside the state dir, and
// that Up records before it starts anything so Down can put it back.

// recordedSysctls are the machine-global knobs the kubelet
// (setupKernelTunables), kube-proxy and the bridge plugin write when they run
// in the host namespace. Inside the node namespaces the network ones are
// per-namespace and disappear with them; the kernel.* and vm.* ones are
// global whatever namespace the kubelet runs in.
var recordedSysctls = []string{
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
	"net/ipv4/ip_forward",
	"net/ipv4/conf/all/route_localnet",
	"net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables",
	"net/netfilter/nf_conntrack_max",
}

// sharedPaths are hard-coded locations outside the state dir that kubelet,
// containerd or the CNI plugins write to even when pointed elsewhere:
// /var/lib/kubelet/device-plugins (kubelet), /var/log/containers (kubelet's
// container log symlinks), /run/containerd/s (containerd 1.6 shim sockets),
// /var/lib/cni (libcni's result cache). The others are checked because a
// missing setting would make a component write there.
var sharedPaths = []string{
	"/var/lib/kubelet",
	"/var/log/containers",
	"/var/log/pods",
	"/var/lib/cni",
	"/run/containerd",
	"/var/lib/containerd",
	"/opt/containerd",
	"/usr/libexec/kubernetes",
	"/etc/kubernetes",
	"/etc/cni",
	"/opt/cni",
	"/run/netns",
}

// state is what Up writes to <state>/state.json.
type state struct {
	Options   Options   `json:"options"`
	StartedAt time.Time `json:"startedAt"`
	Timings   Timings   `json:"timings"`   // filled as Up progresses
	Completed bool      `json:"completed"` // Up finished
}

func recordHost() (map[string]string, map[string]bool) {
	sys := map[string]string{}
	for _, k := range recordedSysctls {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			sys[k] = strings.TrimSpace(string(b))
		}
	}
	ex := map[string]bool{}
	for _, p := range sharedPaths {
		_, err := os.Lstat(p)
		ex[p] = err == nil
	}
	return sys, ex
}

// restoreSysctls writes back every recorded value that changed.
func restoreSysctls(rec map[string]string) error {
	keys := make([]string, 0, len(rec))
	for k := range rec {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []string
	for _, k := range keys {
		p := filepath.Join("/proc/sys", k)
		b, err := os.ReadFile(p)
		if err != nil || strings.TrimSpace(string(b)) == rec[k] {
			continue
		}
		if err := os.WriteFile(p, []byte(rec[k]+"\n"), 0o644); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", k, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("sysctls: %s", strings.Join(errs, "; "))
	}
	return nil
}

func writeState(l layout, st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := l.StateFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, l.StateFile)
}

func readState(file string) (*state, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return &st, nil
}

// hostRegistry is machine-wide: the sysctls and shared paths as they were
// before the first of possibly several local clusters came up, and the state
// dirs of the clusters up since. The last cluster to go down restores the
// sysctls and removes the shared paths that did not exist, so clusters that
// overlap in time (tests of different packages run in parallel) never restore
// a value another one still depends on, nor leave the machine with the
// kubelet's value.
type hostRegistry struct {
	Sysctls  map[string]string `json:"sysctls"`
	Existed  map[string]bool   `json:"existed"`
	Clusters []string          `json:"clusters"` // state dirs
}

const (
	registryFile = "/run/warren-localkube/host.json"
	// registryLock stays (an empty file in /run/lock, gone at reboot):
	// removing a lock file others may be waiting on would let two holders in.
	registryLock = "/run/lock/warren-localkube-host.lock"
)

// withRegistry runs f on the registry under an exclusive lock and saves it
// (or removes it when no cluster is left).
func withRegistry(f func(r *hostRegistry) error) error {
	if err := os.MkdirAll(filepath.Dir(registryLock), 0o1777); err != nil {
		return err
	}
	lk, err := os.OpenFile(registryLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lk.Close()
	if err := syscall.Flock(int(lk.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lk.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it too
	r := &hostRegistry{}
	if b, err := os.ReadFile(registryFile); err == nil {
		if err := json.Unmarshal(b, r); err != nil {
			return fmt.Errorf("%s: %w", registryFile, err)
		}
	}
	if err := f(r); err != nil {
		return err
	}
	if len(r.Clusters) == 0 {
		os.Remove(registryFile)
		if err := os.Remove(filepath.Dir(registryFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(registryFile), 0o755); err != nil {
		return err
	}
	return os.WriteFile(registryFile, b, 0o600)
}

// registerCluster adds stateDir to the registry, recording the host first if
// it is the only cluster.
func registerCluster(stateDir string) error {
	return withRegistry(func(r *hostRegistry) error {
		r.Clusters = liveClusters(r.Clusters, stateDir)
		if len(r.Clusters) == 0 {
			r.Sysctls, r.Existed = recordHost()
		}
		r.Clusters = append(r.Clusters, stateDir)
		return nil
	})
}

// unregisterCluster removes stateDir; when no cluster is left it restores
// the sysctls and removes the shared paths the clusters created.
func unregisterCluster(l layout) error {
	return withRegistry(func(r *hostRegistry) error {
		r.Clusters = liveClusters(r.Clusters, l.StateDir)
		if len(r.Clusters) > 0 || r.Sysctls == nil {
			return nil
		}
		return errors.Join(restoreSysctls(r.Sysctls), removeCreatedShared(r.Existed))
	})
}

// otherClusters returns the registered clusters other than stateDir.
func otherClusters(stateDir string) []string {
	b, err := os.ReadFile(registryFile)
	if err != nil {
		return nil
	}
	var r hostRegistry
	if json.Unmarshal(b, &r) != nil {
		return nil
	}
	return liveClusters(r.Clusters, stateDir)
}

// liveClusters drops except and the clusters whose state dir is gone.
func liveClusters(dirs []string, except string) []string {
	var out []string
	for _, d := range dirs {
		if d != except && exists(filepath.Join(d, "state.json")) {
			out = append(out, d)
		}
	}
	return out
}

// cleanSharedPaths removes what this cluster left in the shared paths:
// kubelet log symlinks into its state dir, libcni cache entries of its
// networks and sandboxes (cached results name the sandbox netns under the
// state dir), and the shim sockets its shims held. Other entries are not its
// own and stay.
func cleanSharedPaths(l layout, shimSockets []string) error {
	var errs []string
	for _, p := range ownSharedEntries(l) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err.Error())
		}
	}
	for _, s := range shimSockets {
		if err := os.Remove(s); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("shared paths: %s", strings.Join(errs, "; "))
	}
	return nil
}

// ownSharedEntries lists the cluster's files in the shared paths.
func ownSharedEntries(l layout) []string {
	var out []string
	// /var/log/containers/<pod>_<ns>_<ctr>-<id>.log -> <podLogsDir>/...
	if ents, err := os.ReadDir("/var/log/containers"); err == nil {
		for _, e := range ents {
			p := filepath.Join("/var/log/containers", e.Name())
			if t, err := os.Readlink(p); err == nil && strings.HasPrefix(t, l.StateDir+"/") {
				out = append(out, p)
			}
		}
	}
	// libcni caches results as <network>-<sandbox id>-<ifname>; the node
	// networks are named after the nodes, containerd's loopback is
	// "cni-loopback" and its cached result names the sandbox's netns file.
	if ents, err := os.ReadDir("/var/lib/cni/results"); err == nil {
		for _, e := range ents {
			p := filepath.Join("/var/lib/cni/results", e.Name())
			mine := false
			for _, n := range l.Nodes {
				mine = mine || strings.HasPrefix(e.Name(), n.Name+"-")
			}
			if !mine {
				b, _ := os.ReadFile(p)
				mine = strings.Contains(string(b), `"`+l.StateDir+"/")
			}
			if mine {
				out = append(out, p)
			}
		}
	}
	return out
}

// removeCreatedShared removes the shared paths that did not exist before the
// first cluster, if nothing but empty directories is left in them (what is
// left belongs to someone else). /var/lib/kubelet holds only the kubelets'
// hard-coded device-plugins registration socket when --root-dir is elsewhere.
func removeCreatedShared(existed map[string]bool) error {
	for _, p := range sharedPaths {
		if existed[p] || !exists(p) {
			continue
		}
		if p == "/var/lib/kubelet" {
			removeFiles(p, func(rel string) bool { return strings.HasPrefix(rel, "device-plugins/") })
		}
		removeEmptyTree(p)
	}
	return nil
}

// removeFiles deletes the non-directories below root whose path relative to
// root satisfies ok.
func removeFiles(root string, ok func(rel string) bool) {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error { //nolint:errcheck // best effort
		if err != nil || d.IsDir() {
			return nil
		}
		if rel, _ := filepath.Rel(root, p); ok(rel) {
			os.Remove(p)
		}
		return nil
	})
}

// removeEmptyTree removes root if it holds only (nested) empty directories.
func removeEmptyTree(root string) {
	var dirs []string
	var files []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error { //nolint:errcheck // best effort
		switch {
		case err != nil:
		case d.IsDir():
			dirs = append(dirs, p)
		default:
			files = append(files, p)
		}
		return nil
	})
	if len(files) > 0 {
		return
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		os.Remove(d)
	}
}
