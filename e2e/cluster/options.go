package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Default values of Options. Every zero field of Options takes its default in
// (*Options).withDefaults.
const (
	DefaultName          = "wk"
	DefaultStateDir      = "/var/lib/warren-localkube"
	DefaultKubeVersion   = "v1.36.3"
	DefaultNodes         = 2
	DefaultAPIServerPort = 6443
	DefaultEtcdPort      = 2379
	DefaultKCMPort       = 10257
	DefaultSchedulerPort = 10259
	// PauseImage is the sandbox image every node's containerd uses; Up builds
	// it from e2e/cluster/images/pause and imports it into every node.
	PauseImage = "warren.local/pause:3.10"
	// EchoImage is the test application image Up builds from
	// e2e/cluster/images/echo (with busybox-static for a shell) and imports.
	EchoImage = "warren.local/echo:dev"
)

var (
	// DefaultNodeSubnet is the host bridge's subnet: .1 is the host side (the
	// control plane listens there), node i gets .(10+i).
	DefaultNodeSubnet = netip.MustParsePrefix("172.30.0.0/24")
	// DefaultPodCIDR is the cluster's pod range; node i gets the i-th /24.
	DefaultPodCIDR = netip.MustParsePrefix("10.244.0.0/16")
	// DefaultServiceCIDR is the Service ClusterIP range; .1 is `kubernetes`.
	DefaultServiceCIDR = netip.MustParsePrefix("10.96.0.0/16")
)

var nameRE = regexp.MustCompile(`^wk[a-z0-9]{0,4}$`)

// Options configure a local cluster. The zero value is the default cluster
// (`localkube up`); tests that run beside it change Name, StateDir, the
// subnets and the ports.
type Options struct {
	// Name prefixes every machine-global object the cluster creates: network
	// namespace files, host links (<Name>-br, <Name>-n<i>), cgroups
	// (/<Name>-node<i> in every hierarchy) and Kubernetes node names
	// (<Name>-node<i>). It must match ^wk[a-z0-9]{0,4}$. Default "wk".
	Name string
	// StateDir holds everything the cluster writes (PKI, configs, etcd data,
	// containerd roots, kubelet roots, logs, pid files, image tarballs, netns
	// files); Down removes it. Default /var/lib/warren-localkube for the
	// default Name, /var/lib/warren-localkube-<Name> otherwise.
	StateDir string
	// RepoDir is the Warren repository (hack/ scripts, image sources); Up
	// needs it. Default: the directory at or above the working directory
	// holding Warren's go.mod.
	RepoDir string
	// KubeVersion is the Kubernetes version hack/kube-bins.sh builds. Default v1.36.3.
	KubeVersion string
	// KubeBinDir holds the Kubernetes binaries. Default
	// <RepoDir>/.cache/kube/<KubeVersion>/bin (hack/kube-bins.sh's default).
	KubeBinDir string
	// Nodes is the number of worker nodes. Default 2.
	Nodes int
	// NodeSubnet is the subnet of the host bridge joining the nodes. It must
	// hold at least Nodes+11 addresses. Default 172.30.0.0/24.
	NodeSubnet netip.Prefix
	// PodCIDR is the cluster's pod range, at most a /16; node i gets the i-th
	// /24 in it. Default 10.244.0.0/16.
	PodCIDR netip.Prefix
	// ServiceCIDR is the ClusterIP range. Default 10.96.0.0/16.
	ServiceCIDR netip.Prefix
	// APIServerPort is kube-apiserver's port on the bridge address. Default 6443.
	APIServerPort int
	// EtcdPort is etcd's client port on 127.0.0.1; EtcdPort+1 is its peer
	// port. Default 2379.
	EtcdPort int
	// ControllerManagerPort and SchedulerPort are the secure ports of
	// kube-controller-manager and kube-scheduler on 127.0.0.1. Defaults 10257
	// and 10259.
	ControllerManagerPort int
	SchedulerPort         int
	// ExtraCNIPlugins are appended, in order, to the plugin chain of every
	// node's conflist after bridge and portmap: the hook a chained plugin such
	// as warren-cni uses. Each entry is one plugin's JSON object.
	ExtraCNIPlugins []json.RawMessage
	// SkipDNS runs the cluster without cluster DNS. By default Up deploys
	// CoreDNS (built from source by hack/image-bins.sh) as kube-system/coredns
	// behind the Service kube-system/kube-dns on the 10th address of
	// ServiceCIDR (10.96.0.10 by default), and every kubelet names that
	// address as clusterDNS. With SkipDNS the kubelets set no clusterDNS and
	// pods get the host's resolv.conf; the images are then only pause and
	// echo (what `make test`'s smoke test wants).
	SkipDNS bool
	// ConformanceImages also builds and imports the images the Gateway API
	// conformance suite runs, under its names (ConformanceImages()); see
	// (*Cluster).LoadConformanceImages to add them to a running cluster.
	ConformanceImages bool
	// SkipDeps skips `hack/deps.sh cluster` (the Debian packages) in Up.
	SkipDeps bool
	// SkipBuild skips `hack/kube-bins.sh` and `hack/image-bins.sh` in Up;
	// the binaries must exist.
	SkipBuild bool
	// OnPhase, when set, is called as each phase of Up ends (for progress
	// output; the library itself never logs).
	OnPhase func(phase string, took time.Duration) `json:"-"`
	// Verbosity is the klog -v level of the Kubernetes components. Default 0
	// means 1; set -1 for 0.
	Verbosity int
}

func (o Options) withDefaults() (Options, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if !nameRE.MatchString(o.Name) {
		return o, fmt.Errorf("cluster: name %q must match %s", o.Name, nameRE)
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
		if o.Name != DefaultName {
			o.StateDir += "-" + o.Name
		}
	}
	sd, err := filepath.Abs(o.StateDir)
	if err != nil {
		return o, fmt.Errorf("cluster: state dir: %w", err)
	}
	if sd == "/" || strings.Count(sd, "/") < 2 {
		return o, fmt.Errorf("cluster: state dir %q is too close to / to be removed by down", sd)
	}
	o.StateDir = sd
	if o.RepoDir == "" {
		// Down, Status and LoadImage work without the repository; Up checks.
		o.RepoDir, _ = FindRepo()
	}
	if o.KubeVersion == "" {
		o.KubeVersion = DefaultKubeVersion
	}
	if o.KubeBinDir == "" && o.RepoDir != "" {
		o.KubeBinDir = filepath.Join(o.RepoDir, ".cache", "kube", o.KubeVersion, "bin")
	}
	if o.Nodes == 0 {
		o.Nodes = DefaultNodes
	}
	if o.Nodes < 1 || o.Nodes > 200 {
		return o, fmt.Errorf("cluster: %d nodes: want 1..200", o.Nodes)
	}
	if !o.NodeSubnet.IsValid() {
		o.NodeSubnet = DefaultNodeSubnet
	}
	if !o.PodCIDR.IsValid() {
		o.PodCIDR = DefaultPodCIDR
	}
	if !o.ServiceCIDR.IsValid() {
		o.ServiceCIDR = DefaultServiceCIDR
	}
	for _, p := range []netip.Prefix{o.NodeSubnet, o.PodCIDR, o.ServiceCIDR} {
		if !p.Addr().Is4() || p.Masked() != p {
			return o, fmt.Errorf("cluster: %s: want an IPv4 network address", p)
		}
	}
	if o.NodeSubnet.Bits() > 32-5 || 1<<(32-o.NodeSubnet.Bits()) < o.Nodes+12 {
		return o, fmt.Errorf("cluster: node subnet %s is too small for %d nodes", o.NodeSubnet, o.Nodes)
	}
	if o.PodCIDR.Bits() > 24-bitsFor(o.Nodes+1) || o.PodCIDR.Bits() < 8 {
		return o, fmt.Errorf("cluster: pod CIDR %s cannot hold %d /24s", o.PodCIDR, o.Nodes+1)
	}
	if o.APIServerPort == 0 {
		o.APIServerPort = DefaultAPIServerPort
	}
	if o.EtcdPort == 0 {
		o.EtcdPort = DefaultEtcdPort
	}
	if o.ControllerManagerPort == 0 {
		o.ControllerManagerPort = DefaultKCMPort
	}
	if o.SchedulerPort == 0 {
		o.SchedulerPort = DefaultSchedulerPort
	}
	for _, raw := range o.ExtraCNIPlugins {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil || m["type"] == nil {
			return o, fmt.Errorf("cluster: extra CNI plugin %s: want a JSON object with a type", raw)
		}
	}
	switch {
	case o.Verbosity == 0:
		o.Verbosity = 1
	case o.Verbosity < 0:
		o.Verbosity = 0
	}
	return o, nil
}

func bitsFor(n int) int {
	b := 0
	for 1<<b < n {
		b++
	}
	return b
}

// FindRepo returns the Warren repository root: the first directory at or above
// the working directory whose go.mod declares module github.com/warren-mesh/warren.
func FindRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("cluster: find repo: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/warren-mesh/warren\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cluster: find repo: no github.com/warren-mesh/warren go.mod above the working directory; set Options.RepoDir")
		}
		dir = parent
	}
}

// node is one worker's derived names, addresses and paths.
type node struct {
	Index    int          // 1-based
	Name     string       // Kubernetes node name, also the netns and cgroup name
	IP       netip.Addr   // address on the host bridge
	PodCIDR  netip.Prefix // this node's /24
	Dir      string       // <state>/nodes/<Name>
	HostVeth string       // host side of the node's veth, on the bridge
	Netns    string       // netns file
	Cgroup   string       // cgroup path below every hierarchy's root, e.g. /wk-node1
}

// layout holds every derived name and path of a cluster; it is a pure function
// of Options, so Down can find everything without a state file.
type layout struct {
	Options
	Bridge      string
	BridgeIP    netip.Addr
	ServiceIP   netip.Addr // first address of ServiceCIDR: the kubernetes Service
	DNSIP       netip.Addr // 10th address of ServiceCIDR: kube-dns (when DNS is on)
	Nodes       []node
	PKIDir      string
	LogDir      string
	RunDir      string // pid files
	ImageDir    string
	NetnsDir    string
	EtcdDir     string
	Kubeconfig  string // admin kubeconfig
	StateFile   string
	APIServer   string // https URL
	ClusterName string
}

func newLayout(o Options) layout {
	l := layout{Options: o}
	l.Bridge = o.Name + "-br"
	l.BridgeIP = o.NodeSubnet.Addr().Next()
	l.ServiceIP = o.ServiceCIDR.Addr().Next()
	l.DNSIP = dnsIP(o.ServiceCIDR)
	l.PKIDir = filepath.Join(o.StateDir, "pki")
	l.LogDir = filepath.Join(o.StateDir, "logs")
	l.RunDir = filepath.Join(o.StateDir, "run")
	l.ImageDir = filepath.Join(o.StateDir, "images")
	l.NetnsDir = filepath.Join(o.StateDir, "netns")
	l.EtcdDir = filepath.Join(o.StateDir, "etcd")
	l.Kubeconfig = filepath.Join(o.StateDir, "kubeconfig")
	l.StateFile = filepath.Join(o.StateDir, "state.json")
	l.APIServer = fmt.Sprintf("https://%s:%d", l.BridgeIP, o.APIServerPort)
	l.ClusterName = "warren-" + o.Name
	pod := o.PodCIDR.Addr().As4()
	for i := 1; i <= o.Nodes; i++ {
		name := fmt.Sprintf("%s-node%d", o.Name, i)
		ip := o.NodeSubnet.Addr()
		for range 10 + i {
			ip = ip.Next()
		}
		p := pod
		p[2] += byte(i) // the i-th /24: withDefaults checked that PodCIDR holds Nodes+1 of them
		l.Nodes = append(l.Nodes, node{
			Index:    i,
			Name:     name,
			IP:       ip,
			PodCIDR:  netip.PrefixFrom(netip.AddrFrom4(p), 24),
			Dir:      filepath.Join(o.StateDir, "nodes", name),
			HostVeth: fmt.Sprintf("%s-n%d", o.Name, i),
			Netns:    filepath.Join(o.StateDir, "netns", name),
			Cgroup:   "/" + name,
		})
	}
	return l
}

func (l layout) bin(name string) string { return filepath.Join(l.KubeBinDir, name) }

func (n node) containerdSock() string { return filepath.Join(n.Dir, "containerd", "containerd.sock") }

// IsolatedOptions returns options for a cluster that runs beside the default
// one (and beside other isolated clusters with another slot, 1..9): the
// subnets become 172.30.<slot>.0/24, 10.<244+slot>.0.0/16 and
// 10.<96+slot>.0.0/16, and etcd, controller-manager and scheduler ports move
// by 10*slot and 100*slot. The apiserver keeps port 6443 on its own bridge
// address.
func IsolatedOptions(name string, slot int) Options {
	if slot < 1 || slot > 9 {
		panic(fmt.Sprintf("cluster: IsolatedOptions slot %d: want 1..9", slot))
	}
	return Options{
		Name:                  name,
		NodeSubnet:            netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 30, byte(slot), 0}), 24),
		PodCIDR:               netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(244 + slot), 0, 0}), 16),
		ServiceCIDR:           netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(96 + slot), 0, 0}), 16),
		EtcdPort:              DefaultEtcdPort + 10*slot,
		ControllerManagerPort: DefaultKCMPort + 100*slot,
		SchedulerPort:         DefaultSchedulerPort + 100*slot,
	}
}
