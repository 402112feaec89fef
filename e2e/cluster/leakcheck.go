package cluster

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Snapshot is the machine state a cluster can leave behind, reduced to what
// belongs (or could belong) to the cluster named in Options, so that
// concurrent tests of other engineers on the same machine do not show up:
// each category holds sorted entries.
type Snapshot map[string][]string

// TakeSnapshot records, for the cluster o describes: its processes (command
// line naming the state dir, or living in its node cgroups), mounts below the
// state dir and the shared paths, host links and routes with its names or
// subnets, iptables/nftables lines of the host namespace naming its chains or
// subnets, its cgroups, the recorded sysctls, and the hard-coded shared paths
// the components write to.
func TakeSnapshot(ctx context.Context, o Options) (Snapshot, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	l := newLayout(o)
	s := Snapshot{}
	add := func(cat, e string) { s[cat] = append(s[cat], e) }

	// Processes.
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() || !alive(pid) {
			continue
		}
		cl := cmdline(pid)
		cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if strings.Contains(cl, l.StateDir) || strings.Contains(string(cg), ":/"+l.Name+"-node") {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			add("process", fmt.Sprintf("%d %s", pid, strings.TrimSpace(string(comm))))
		}
	}

	// Mounts.
	// Other tests on the machine mount their own netns files under
	// /run/netns: only containerd's default names (cni-...) are watched there.
	watched := []string{l.StateDir, "/var/lib/kubelet", "/run/containerd", "/var/lib/cni", "/var/log", "/run/netns/cni-"}
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			mp, fstype := parseMountinfo(sc.Text())
			for _, w := range watched {
				if mp == w || strings.HasPrefix(mp, w+"/") || (strings.HasSuffix(w, "-") && strings.HasPrefix(mp, w)) {
					add("mount", mp+" "+fstype)
					break
				}
			}
		}
		f.Close()
	}

	// Links and routes.
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for _, ifc := range ifaces {
		if strings.HasPrefix(ifc.Name, l.Name+"-") || strings.HasPrefix(ifc.Name, "wkcni") {
			add("link", ifc.Name)
		}
	}
	marks := []string{l.Bridge, cidrMark(l.NodeSubnet.String()), cidrMark(l.PodCIDR.String()), cidrMark(l.ServiceCIDR.String())}
	mine := func(line string) bool {
		for _, m := range marks {
			if strings.Contains(line, m) {
				return true
			}
		}
		// kube-proxy's chains; the CNI plugins' CNI-* chains are not
		// counted, other tests on the machine use the same plugins.
		return strings.Contains(line, "KUBE-")
	}
	if out, err := exec.CommandContext(ctx, "ip", "route", "show", "table", "all").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if line != "" && mine(line) {
				add("route", line)
			}
		}
	}

	// Firewall rules of the host namespace.
	for _, c := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"nft", "list", "ruleset"}} {
		out, err := exec.CommandContext(ctx, c[0], c[1:]...).Output()
		if err != nil {
			continue // tool missing: nothing of ours can be there either
		}
		for _, line := range strings.Split(string(out), "\n") {
			if mine(line) && !strings.HasPrefix(line, "#") {
				add("rule", c[0]+": "+strings.TrimSpace(line))
			}
		}
	}

	// Cgroups.
	if mps, err := cgroupMounts(); err == nil {
		for _, mp := range mps {
			ents, _ := os.ReadDir(mp)
			for _, e := range ents {
				if e.IsDir() && strings.HasPrefix(e.Name(), l.Name+"-") {
					add("cgroup", filepath.Join(mp, e.Name()))
				}
			}
		}
	}

	// The cluster's own entries in the shared paths; stale shim sockets
	// (nobody listens: a killed shim's leftover, whoever's it was — so,
	// like the sysctls, Leaks judges them only when no other cluster was
	// up: one going down at that moment has killed its shims and not yet
	// removed their sockets).
	for _, p := range ownSharedEntries(l) {
		add("file", p)
	}
	socks, _ := os.ReadDir("/run/containerd/s")
	for _, e := range socks {
		p := filepath.Join("/run/containerd/s", e.Name())
		if c, err := net.Dial("unix", p); err == nil {
			c.Close()
		} else {
			add("stale-socket", p)
		}
	}
	if _, err := os.Stat(l.StateDir); err == nil {
		add("path", l.StateDir)
	}
	// Sysctls and the shared paths themselves are restored by the last
	// cluster down: compare them only when no other cluster is up.
	if len(otherClusters(l.StateDir)) == 0 {
		add(hostKey, "recorded")
		sys, existed := recordHost()
		for k, v := range sys {
			add("sysctl", k+"="+v)
		}
		for p, ok := range existed {
			if ok {
				add("shared-path", p)
			}
		}
	}
	for k := range s {
		sort.Strings(s[k])
	}
	return s, nil
}

// cidrMark is the text that starts every address of an IPv4 prefix of /8,
// /16 or /24 ("10.244." for 10.244.0.0/16), or the prefix itself otherwise.
func cidrMark(prefix string) string {
	addr, bits, ok := strings.Cut(prefix, "/")
	if !ok {
		return prefix
	}
	oct := strings.Split(addr, ".")
	switch bits {
	case "8":
		return oct[0] + "."
	case "16":
		return oct[0] + "." + oct[1] + "."
	case "24":
		return oct[0] + "." + oct[1] + "." + oct[2] + "."
	}
	return addr
}

// hostKey marks a snapshot taken while no other local cluster was up.
const hostKey = "_host"

// Leaks returns what after holds that before did not, and sysctls whose value
// changed, as "category: entry" lines. Sysctls, shared paths and stale shim
// sockets count only when both snapshots were taken with no other local
// cluster up.
func Leaks(before, after Snapshot) []string {
	var out []string
	cats := make([]string, 0, len(after))
	host := len(before[hostKey]) > 0 && len(after[hostKey]) > 0
	for c := range after {
		if c == hostKey || (!host && (c == "sysctl" || c == "shared-path" || c == "stale-socket")) {
			continue
		}
		cats = append(cats, c)
	}
	sort.Strings(cats)
	for _, c := range cats {
		had := map[string]bool{}
		for _, e := range before[c] {
			had[e] = true
		}
		for _, e := range after[c] {
			if !had[e] {
				out = append(out, c+": "+e)
			}
		}
	}
	return out
}
