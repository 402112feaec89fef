package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// A node is a network namespace running its own containerd, kubelet and
// kube-proxy. Every path a component would otherwise share with another node
// (or with a containerd/kubelet of the machine) is set to the node's directory
// <state>/nodes/<node>:
//
//	containerd/{config.toml,root,state,containerd.sock,runc,opt}
//	cni/{net.d/10-localkube.conflist,ipam}
//	kubelet/{config.yaml,root,pki,volume-plugins}
//	pod-logs/            kubelet podLogsDir (a shared /var/log/pods gets cleaned by the other kubelet)
//	kube-proxy/config.yaml
//
// The daemons' logs are <state>/logs/<node>-{containerd,kubelet,kube-proxy}.log.

func (n node) path(p ...string) string { return filepath.Join(append([]string{n.Dir}, p...)...) }

// containerdConfig is containerd 1.6's config (version 2). What mattered:
// restrict_oom_score_adj (root here lacks CAP_SYS_RESOURCE: without it every
// sandbox fails "can't get final child's PID from pipe"), runc's own Root
// (runc state of two nodes must not mix), cgroupfs (no systemd), our own CNI
// conf_dir, pod netns files under the state dir, and the sandbox image we
// import ourselves.
func (l layout) containerdConfig(n node) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[7]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[8]q
    max_conf_num = 1
`, n.path("containerd", "root"), n.path("containerd", "state"), n.containerdSock(),
		n.path("containerd", "containerd.sock.ttrpc"), n.path("containerd", "opt"), PauseImage,
		n.path("containerd", "runc"), n.path("cni", "net.d"))
}

// cniConfig is the node's conflist: Debian's bridge plugin (a per-node bridge
// inside the node namespace, the node's pod /24 from host-local with its
// state under the node dir, no masquerade so pod addresses survive across
// nodes, hairpin for a pod reaching itself through a Service), portmap for
// hostPort, then Options.ExtraCNIPlugins. containerd adds loopback itself.
func (l layout) cniConfig(n node) ([]byte, error) {
	plugins := []any{
		map[string]any{
			"type":        "bridge",
			"bridge":      "wkcni0",
			"isGateway":   true,
			"ipMasq":      false,
			"hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": n.PodCIDR.String()}}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				"dataDir": n.path("cni", "ipam"),
			},
		},
		map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
	}
	for _, raw := range l.ExtraCNIPlugins {
		plugins = append(plugins, raw)
	}
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       n.Name,
		"plugins":    plugins,
	}, "", "  ")
}

func (l layout) kubeletConfig(n node) string {
	clusterDNS := "" // without cluster DNS, pods get the host's resolv.conf
	if !l.SkipDNS {
		clusterDNS = fmt.Sprintf("clusterDNS: [%q]\n", l.DNSIP)
	}
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: %[2]s
tlsPrivateKeyFile: %[3]s
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[4]s
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://%[5]s
imageServiceEndpoint: unix://%[5]s
cgroupDriver: cgroupfs
cgroupRoot: %[6]s
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
failCgroupV1: false
failSwapOn: false
podLogsDir: %[7]s
volumePluginDir: %[8]s
clusterDomain: %[9]s
resolvConf: /etc/resolv.conf
%[10]simageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
  imagefs.inodesFree: "1%%"
makeIPTablesUtilChains: false
serializeImagePulls: false
shutdownGracePeriod: 0s
shutdownGracePeriodCriticalPods: 0s
maxPods: 110
nodeStatusReportFrequency: 10s
`, n.IP, l.pki(n.Name+"-kubelet-serving.crt"), l.pki(n.Name+"-kubelet-serving.key"), l.pki("ca.crt"),
		n.containerdSock(), n.Cgroup, n.path("pod-logs"), n.path("kubelet", "volume-plugins"),
		ClusterDomain, clusterDNS)
}

func (l layout) kubeProxyConfig(n node) string {
	// conntrack: all zero so kube-proxy writes no machine-global sysctl
	// (nf_conntrack_max, the hashsize module parameter); localhostNodePorts
	// off so it leaves route_localnet alone.
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %[1]s
hostnameOverride: %[2]s
bindAddress: 0.0.0.0
healthzBindAddress: 0.0.0.0:10256
metricsBindAddress: 127.0.0.1:10249
mode: iptables
clusterCIDR: %[3]s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
  minSyncPeriod: 0s
  syncPeriod: 30s
`, l.kubeconfigFor("kube-proxy"), n.Name, l.PodCIDR)
}

func (l layout) nodeDaemons(n node, cgroupProcs string) (containerd, kubelet, kubeProxy daemon) {
	mk := func(comp, bin string, args ...string) daemon {
		return daemon{
			Name:        n.Name + "/" + comp,
			Bin:         bin,
			Args:        args,
			Netns:       n.Netns,
			CgroupProcs: cgroupProcs,
			LogFile:     filepath.Join(l.LogDir, n.Name+"-"+comp+".log"),
			PIDFile:     filepath.Join(l.RunDir, n.Name+"-"+comp+".pid"),
		}
	}
	v := fmt.Sprint(l.Verbosity)
	containerd = mk("containerd", "/usr/bin/containerd", "--config", n.path("containerd", "config.toml"))
	kubelet = mk("kubelet", l.bin("kubelet"),
		"--config="+n.path("kubelet", "config.yaml"),
		"--kubeconfig="+l.kubeconfigFor(n.Name),
		"--root-dir="+n.path("kubelet", "root"),
		"--cert-dir="+n.path("kubelet", "pki"),
		"--hostname-override="+n.Name,
		"--node-ip="+n.IP.String(),
		"--v="+v)
	kubeProxy = mk("kube-proxy", l.bin("kube-proxy"),
		"--config="+n.path("kube-proxy", "config.yaml"),
		"--v="+v)
	return containerd, kubelet, kubeProxy
}

// writeNodeFiles writes the node's configuration files and directories.
func (l layout) writeNodeFiles(n node) error {
	for _, d := range []string{"containerd", "cni/net.d", "cni/ipam", "kubelet/root", "kubelet/pki", "kubelet/volume-plugins", "pod-logs", "kube-proxy"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return err
		}
	}
	cni, err := l.cniConfig(n)
	if err != nil {
		return err
	}
	files := map[string]string{
		n.path("containerd", "config.toml"):             l.containerdConfig(n),
		n.path("cni", "net.d", "10-localkube.conflist"): string(cni) + "\n",
		n.path("kubelet", "config.yaml"):                l.kubeletConfig(n),
		n.path("kube-proxy", "config.yaml"):             l.kubeProxyConfig(n),
	}
	for p, s := range files {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// startContainerd starts the node's containerd and waits until ctr can talk
// to it.
func startContainerd(ctx context.Context, d daemon, sock string) error {
	if _, err := d.start(); err != nil {
		return err
	}
	pid := readPID(d.PIDFile)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			if _, err := run(ctx, "ctr", "-a", sock, "version"); err == nil {
				return nil
			}
		}
		if !alive(pid) {
			return fmt.Errorf("%s exited: %s", d.Name, logTail(d.LogFile, 15))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: socket %s not ready after 30s", d.Name, sock)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
