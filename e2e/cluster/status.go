package cluster

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Status is a snapshot of a cluster: its processes, nodes and pods.
type Status struct {
	Processes []ProcessStatus
	Nodes     []NodeStatus
	Pods      []PodStatus
	// APIError is set when the apiserver could not be asked (Nodes and Pods
	// are then empty).
	APIError string
}

// ProcessStatus is one daemon of the cluster; for a node's containerd, RSS
// counts the whole node cgroup (shims and containers) in TreeRSSKiB.
type ProcessStatus struct {
	Name       string
	PID        int
	Alive      bool
	RSSKiB     int64
	TreeRSSKiB int64 // node cgroup total (containerd row only)
	TreePIDs   int
}

// NodeStatus is one Node object.
type NodeStatus struct {
	Name, IP, PodCIDR, Version string
	Ready                      bool
	Taints                     []string
}

// PodStatus is one Pod object.
type PodStatus struct {
	Namespace, Name, Node, Phase, IP string
	Ready                            bool
	Restarts                         int32
}

// Status reports the cluster's processes and, through the apiserver, its
// nodes and pods.
func (c *Cluster) Status(ctx context.Context) (*Status, error) {
	s := &Status{}
	l := c.l
	ds := l.controlPlane()
	for _, n := range l.Nodes {
		ctrd, kubelet, proxy := l.nodeDaemons(n, "")
		ds = append(ds, ctrd, kubelet, proxy)
	}
	for _, d := range ds {
		pid := readPID(d.PIDFile)
		ps := ProcessStatus{Name: d.Name, PID: pid, Alive: alive(pid), RSSKiB: rssKiB(pid)}
		for _, n := range l.Nodes {
			if d.Name == n.Name+"/containerd" {
				pids, _ := cgroupPIDs(n.Cgroup)
				ps.TreePIDs = len(pids)
				for _, p := range pids {
					ps.TreeRSSKiB += rssKiB(p)
				}
			}
		}
		s.Processes = append(s.Processes, ps)
	}
	cs, err := c.Client()
	if err != nil {
		return nil, err
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		s.APIError = err.Error()
		return s, nil
	}
	for _, n := range nodes.Items {
		ns := NodeStatus{Name: n.Name, PodCIDR: n.Spec.PodCIDR, Version: n.Status.NodeInfo.KubeletVersion}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ns.IP = a.Address
			}
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				ns.Ready = cond.Status == corev1.ConditionTrue
			}
		}
		for _, t := range n.Spec.Taints {
			ns.Taints = append(ns.Taints, fmt.Sprintf("%s:%s", t.Key, t.Effect))
		}
		s.Nodes = append(s.Nodes, ns)
	}
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		s.APIError = err.Error()
		return s, nil
	}
	for _, p := range pods.Items {
		ps := PodStatus{Namespace: p.Namespace, Name: p.Name, Node: p.Spec.NodeName, Phase: string(p.Status.Phase), IP: p.Status.PodIP}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady {
				ps.Ready = cond.Status == corev1.ConditionTrue
			}
		}
		for _, cst := range p.Status.ContainerStatuses {
			ps.Restarts += cst.RestartCount
		}
		s.Pods = append(s.Pods, ps)
	}
	sort.Slice(s.Pods, func(i, j int) bool {
		return s.Pods[i].Namespace+"/"+s.Pods[i].Name < s.Pods[j].Namespace+"/"+s.Pods[j].Name
	})
	return s, nil
}

// rssKiB is pid's resident set size, 0 when it is gone.
func rssKiB(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}
