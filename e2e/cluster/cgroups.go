package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cgroups: every node's kubelet runs with cgroupRoot /<node> and the kubelet
// checks that it exists in every hierarchy, so Up creates it in every mounted
// hierarchy (v1 controllers, the named systemd one and the v2 unified one of
// this machine's hybrid layout), with cpuset.cpus/mems copied from the root
// (a v1 cpuset cgroup without them cannot hold a task). The node's daemons
// (containerd, kubelet, kube-proxy) join <node>/daemons in the pids hierarchy
// before they exec, and containerd's shims inherit it, while runc puts the
// containers under <node>/kubepods: so the pids tree of /<node> holds every
// process of the node, and Down ends them all by reading it.

const trackHierarchy = "pids"

// cgroupMounts returns the mount points of every cgroup hierarchy.
func cgroupMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		mp, fstype := parseMountinfo(sc.Text())
		if fstype == "cgroup" || fstype == "cgroup2" {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// trackRoot is the pids hierarchy's mount point.
func trackRoot() (string, error) {
	mps, err := cgroupMounts()
	if err != nil {
		return "", err
	}
	for _, mp := range mps {
		if filepath.Base(mp) == trackHierarchy {
			return mp, nil
		}
	}
	// A pure cgroup v2 machine: the unified hierarchy tracks processes too.
	for _, mp := range mps {
		if _, err := os.Stat(filepath.Join(mp, "cgroup.controllers")); err == nil {
			return mp, nil
		}
	}
	return "", errors.New("no pids or cgroup2 hierarchy mounted")
}

// createNodeCgroups makes /<node> in every hierarchy and <node>/daemons in the
// tracking one; it returns the daemons' cgroup.procs file.
func createNodeCgroups(n node) (string, error) {
	mps, err := cgroupMounts()
	if err != nil {
		return "", err
	}
	for _, mp := range mps {
		dir := filepath.Join(mp, n.Cgroup)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			b, err := os.ReadFile(filepath.Join(mp, f))
			if err != nil {
				continue // not the cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
				return "", fmt.Errorf("cgroup %s: %s: %w", dir, f, err)
			}
		}
	}
	tr, err := trackRoot()
	if err != nil {
		return "", err
	}
	d := filepath.Join(tr, n.Cgroup, "daemons")
	if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("cgroup %s: %w", d, err)
	}
	if _, err := os.Stat(filepath.Join(d, "cgroup.procs")); err != nil {
		return "", err
	}
	return filepath.Join(d, "cgroup.procs"), nil
}

// cgroupPIDs returns every pid in the tracking hierarchy's subtree at cg.
func cgroupPIDs(cg string) ([]int, error) {
	tr, err := trackRoot()
	if err != nil {
		return nil, err
	}
	var pids []int
	root := filepath.Join(tr, cg)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil // the cgroup went away
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids, err
}

// killCgroup SIGKILLs every process below cg until none is left.
func killCgroup(cg string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pids, err := cgroupPIDs(cg)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: pids %v survive SIGKILL", cg, pids)
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL) //nolint:errcheck // ESRCH: already gone
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// removeNodeCgroups removes /<node> and everything below it in every
// hierarchy, deepest first (cgroup directories are removed with rmdir).
func removeNodeCgroups(cg string) error {
	mps, err := cgroupMounts()
	if err != nil {
		return err
	}
	var errs []string
	for _, mp := range mps {
		root := filepath.Join(mp, cg)
		var dirs []string
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error { //nolint:errcheck // best effort walk
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			var err error
			for range 50 { // a cgroup lingers briefly after its last task exits
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", d, err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cgroups: %s", strings.Join(errs, "; "))
	}
	return nil
}

// parseMountinfo returns the mount point and file system type of one
// /proc/self/mountinfo line.
func parseMountinfo(line string) (mountPoint, fstype string) {
	f := strings.Fields(line)
	if len(f) < 5 {
		return "", ""
	}
	mountPoint = unescapeMount(f[4])
	for i := 5; i < len(f); i++ {
		if f[i] == "-" && i+1 < len(f) {
			fstype = f[i+1]
			break
		}
	}
	return mountPoint, fstype
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
