package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Down removes everything a cluster created, whether Up finished or not:
//
//  1. the nodes' processes: kubelet and kube-proxy (SIGTERM), then every
//     process left in the node's cgroup tree — containerd, its shims, every
//     container — with SIGKILL (the kubelet is gone, nothing restarts them);
//  2. the control plane (scheduler, controller manager, apiserver, etcd), by
//     pid file, checking each pid's command line names the state dir;
//  3. every mount under the state dir, deepest first: kubelet pod volumes
//     (tmpfs secrets, projected tokens), the kubelet root's own shared bind
//     mount, containerd's rootfs overlays and sandbox shm, pod netns files
//     (netns_mounts_under_state_dir) and the node netns files — so the node
//     namespaces, with their veths, CNI bridge and every iptables/nftables
//     rule kube-proxy and the CNI plugins wrote there, disappear;
//  4. the host links <Name>-br and <Name>-n<i> (with their routes);
//  5. the cgroups /<Name>-node<i> in every hierarchy;
//  6. what the components wrote to hard-coded shared paths (container log
//     symlinks, libcni cache entries, shim sockets);
//  7. the state dir, once no mount is left below it;
//  8. when no other local cluster is up (see hostRegistry): the sysctls as
//     recorded before the first one came up, and the shared paths that did
//     not exist then (/var/lib/kubelet, /var/log/containers, ...).
//
// Nothing global is flushed: Down touches only objects named after the
// cluster or found through its state dir and cgroups. A missing cluster is
// not an error.
func Down(ctx context.Context, o Options) error {
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	l := newLayout(o)
	st, err := readState(l.StateFile)
	if err == nil {
		so := st.Options
		so.StateDir, so.RepoDir = o.StateDir, o.RepoDir
		if so, err = so.withDefaults(); err == nil {
			l = newLayout(so)
		}
	}
	l = withFoundNodes(l)
	var errs []error
	add := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	var shimSockets []string
	for _, n := range l.Nodes {
		_, kubelet, proxy := l.nodeDaemons(n, "")
		for _, d := range []daemon{kubelet, proxy} {
			add("node "+d.Name, stopPID(readPID(d.PIDFile), l.StateDir, 5*time.Second))
		}
		pids, _ := cgroupPIDs(n.Cgroup)
		shimSockets = append(shimSockets, shimSocketsOf(pids)...)
		add("node "+n.Name, killCgroup(n.Cgroup, 15*time.Second))
		ctrd, _, _ := l.nodeDaemons(n, "")
		add("node "+ctrd.Name, stopPID(readPID(ctrd.PIDFile), l.StateDir, 5*time.Second))
	}
	cp := l.controlPlane()
	for i := len(cp) - 1; i >= 0; i-- {
		add(cp[i].Name, stopPID(readPID(cp[i].PIDFile), l.StateDir, 10*time.Second))
	}
	add("mounts", unmountUnder(l.StateDir))
	add("network", teardownNetwork(ctx, l))
	for _, n := range l.Nodes {
		add("node "+n.Name, removeNodeCgroups(n.Cgroup))
	}
	add("cleanup", cleanSharedPaths(l, shimSockets))
	if left := mountsUnder(l.StateDir); len(left) > 0 {
		add("state dir", fmt.Errorf("mounts remain, not removing %s: %s", l.StateDir, strings.Join(left, ", ")))
	} else {
		add("state dir", os.RemoveAll(l.StateDir))
		// The last cluster down restores the sysctls and the shared paths.
		add("host", unregisterCluster(l))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster: down %q: %w", l.Name, err)
	}
	return nil
}

// withFoundNodes extends l.Nodes with nodes found on the machine (cgroups,
// netns files, pid files) beyond what l knows, so Down also cleans a cluster
// whose state file is gone or that had more nodes.
func withFoundNodes(l layout) layout {
	found := len(l.Nodes)
	consider := func(name string) {
		rest, ok := strings.CutPrefix(name, l.Name+"-node")
		if !ok {
			return
		}
		if i, err := strconv.Atoi(rest); err == nil && i > found && i <= 200 {
			found = i
		}
	}
	if mps, err := cgroupMounts(); err == nil {
		for _, mp := range mps {
			ents, _ := os.ReadDir(mp)
			for _, e := range ents {
				consider(e.Name())
			}
		}
	}
	ents, _ := os.ReadDir(l.NetnsDir)
	for _, e := range ents {
		consider(e.Name())
	}
	if found > len(l.Nodes) {
		o := l.Options
		o.Nodes = found
		return newLayout(o)
	}
	return l
}

// mountsUnder returns the mount points at or below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		mp, _ := parseMountinfo(sc.Text())
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// unmountUnder unmounts everything at or below dir, deepest first, repeating
// for stacked mounts; a busy mount is detached (MNT_DETACH).
func unmountUnder(dir string) error {
	for range 10 {
		mps := mountsUnder(dir)
		if len(mps) == 0 {
			return nil
		}
		sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
		for _, mp := range mps {
			if err := syscall.Unmount(mp, 0); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				syscall.Unmount(mp, syscall.MNT_DETACH) //nolint:errcheck // checked by the next round
			}
		}
	}
	if mps := mountsUnder(dir); len(mps) > 0 {
		return fmt.Errorf("still mounted: %s", strings.Join(mps, ", "))
	}
	return nil
}

// shimSocketsOf returns the socket files under /run/containerd that the
// containerd shims among pids listen on: containerd 1.6 puts them in the
// hard-coded /run/containerd/s/<hash>, and a killed shim leaves its file.
func shimSocketsOf(pids []int) []string {
	var out []string
	for _, pid := range pids {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if !strings.HasPrefix(string(comm), "containerd-shim") {
			continue
		}
		inodes := map[string]bool{}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			t, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			if err == nil && strings.HasPrefix(t, "socket:[") {
				inodes[strings.TrimSuffix(strings.TrimPrefix(t, "socket:["), "]")] = true
			}
		}
		// /proc/<pid>/net/unix lists the sockets of the shim's network
		// namespace: Num RefCount Protocol Flags Type St Inode Path.
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/unix", pid))
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 8 && inodes[f[6]] && strings.HasPrefix(f[7], "/run/containerd/") {
				out = append(out, filepath.Clean(f[7]))
			}
		}
	}
	return out
}
