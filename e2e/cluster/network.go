package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// The network: one Linux bridge <Name>-br in the host namespace carries the
// first address of NodeSubnet (the control plane listens there). Every node
// is a network namespace, persisted as a bind-mounted nsfs file under
// <state>/netns (not /run/netns: `ip netns exec` remounts /sys and hides the
// hybrid cgroup2 mount, so everything enters with `nsenter --net`). A veth
// pair joins it to the bridge: <Name>-n<i> on the host side, eth0 inside.
// Node-to-node and pod-to-pod traffic between nodes crosses the bridge, where
// tcpdump can watch it. Routes: each node's pod /24 is routed via that node's
// address, on the host and in every other node; nodes route everything else
// via the bridge address. No NAT: pod source addresses survive across nodes.

// setupNetwork creates the bridge, the node namespaces, the veths and routes.
func setupNetwork(ctx context.Context, l layout) error {
	if err := os.MkdirAll(l.NetnsDir, 0o755); err != nil {
		return err
	}
	bits := l.NodeSubnet.Bits()
	steps := [][]string{
		{"ip", "link", "add", l.Bridge, "type", "bridge"},
		{"ip", "addr", "add", fmt.Sprintf("%s/%d", l.BridgeIP, bits), "dev", l.Bridge},
		{"ip", "link", "set", l.Bridge, "up"},
	}
	for _, s := range steps {
		if _, err := run(ctx, s[0], s[1:]...); err != nil {
			return fmt.Errorf("bridge %s: %w", l.Bridge, err)
		}
	}
	self := fmt.Sprint(os.Getpid()) // a pid in the host netns, for `ip link ... netns`
	for _, n := range l.Nodes {
		if err := createNetns(ctx, n.Netns); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		// Create the pair inside the node and push the host end out, so the
		// node side is eth0 from the start.
		host := [][]string{
			{"nsenter", "--net=" + n.Netns, "--", "ip", "link", "add", "eth0", "type", "veth", "peer", "name", n.HostVeth, "netns", self},
			{"ip", "link", "set", n.HostVeth, "master", l.Bridge},
			{"ip", "link", "set", n.HostVeth, "up"},
			{"ip", "route", "add", n.PodCIDR.String(), "via", n.IP.String(), "dev", l.Bridge},
		}
		for _, s := range host {
			if _, err := run(ctx, s[0], s[1:]...); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
		inside := [][]string{
			{"ip", "link", "set", "lo", "up"},
			{"ip", "addr", "add", fmt.Sprintf("%s/%d", n.IP, bits), "dev", "eth0"},
			{"ip", "link", "set", "eth0", "up"},
			{"ip", "route", "add", "default", "via", l.BridgeIP.String()},
		}
		for _, o := range l.Nodes {
			if o.Index != n.Index {
				inside = append(inside, []string{"ip", "route", "add", o.PodCIDR.String(), "via", o.IP.String(), "dev", "eth0"})
			}
		}
		// Per-namespace sysctls: forward pod traffic, and let iptables see
		// bridged pod-to-pod traffic so a Service whose backend sits on the
		// same node (even the client itself: hairpin) is un-NATed correctly.
		inside = append(inside,
			[]string{"sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables"})
		for _, s := range inside {
			if _, err := inNetns(ctx, n.Netns, s...); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
	}
	return nil
}

// createNetns makes a new network namespace persisted at file.
func createNetns(ctx context.Context, file string) error {
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("netns %s: %w", file, err)
	}
	f.Close()
	if _, err := run(ctx, "unshare", "--net="+file, "true"); err != nil {
		os.Remove(file)
		return fmt.Errorf("netns %s: %w", file, err)
	}
	return nil
}

// teardownNetwork deletes the host links the cluster owns (the node
// namespaces go away when their files are unmounted and their processes have
// exited; deleting a namespace deletes the veth peer, the CNI bridge and every
// iptables rule kube-proxy and the CNI plugins wrote inside it).
func teardownNetwork(ctx context.Context, l layout) error {
	var errs []string
	ifaces, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, ifc := range ifaces {
		if ifc.Name == l.Bridge || isNodeVeth(l, ifc.Name) {
			if _, err := run(ctx, "ip", "link", "del", ifc.Name); err != nil && linkExists(ifc.Name) {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("links: %s", strings.Join(errs, "; "))
	}
	return nil
}

// isNodeVeth reports whether name is a host-side node veth of this cluster
// (<Name>-n<digits>); it matches by pattern so Down also finds the links of a
// cluster that was brought up with more nodes than Down was told about.
func isNodeVeth(l layout, name string) bool {
	rest, ok := strings.CutPrefix(name, l.Name+"-n")
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}
