package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// KubeComponents are the Kubernetes binaries a cluster runs, built by
// hack/kube-bins.sh.
var KubeComponents = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"}

// Timings of the phases of Up.
type Timings struct {
	Deps         time.Duration `json:"deps"`         // hack/deps.sh cluster
	Build        time.Duration `json:"build"`        // hack/kube-bins.sh (+ hack/image-bins.sh for DNS and conformance images)
	PKI          time.Duration `json:"pki"`          // CA, certificates, kubeconfigs
	Images       time.Duration `json:"images"`       // pause + echo (+ coredns, conformance) image tarballs (built beside the control plane)
	Network      time.Duration `json:"network"`      // bridge, namespaces, veths, routes
	ControlPlane time.Duration `json:"controlPlane"` // etcd + apiserver ready, kcm + scheduler started
	NodesStarted time.Duration `json:"nodesStarted"` // containerd up, images imported, kubelet + kube-proxy started
	NodesReady   time.Duration `json:"nodesReady"`   // every node Ready, not-ready taint gone, kube-proxy healthy
	DNS          time.Duration `json:"dns"`          // CoreDNS deployed, ready and answering
	Total        time.Duration `json:"total"`
}

// Cluster is a running local cluster.
type Cluster struct {
	l       layout
	Timings Timings
}

// NodeInfo describes one node for tests and tools.
type NodeInfo struct {
	Name             string
	IP               string
	PodCIDR          string
	Netns            string // network namespace file: nsenter --net=<Netns>
	ContainerdSocket string // ctr -a <ContainerdSocket> -n k8s.io ...
	Cgroup           string // cgroupRoot of the kubelet, in every hierarchy
}

// Up builds what is missing and starts a cluster. On error the partial
// cluster is left for inspection (logs under <StateDir>/logs); Down removes
// it. Up refuses to start over an existing state dir.
func Up(ctx context.Context, o Options) (*Cluster, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	l := newLayout(o)
	c := &Cluster{l: l}
	if os.Geteuid() != 0 {
		return nil, errors.New("cluster: up: must run as root (network namespaces, cgroups, containerd)")
	}
	if o.RepoDir == "" {
		return nil, errors.New("cluster: up: no github.com/warren-mesh/warren go.mod at or above the working directory; set Options.RepoDir")
	}
	if _, err := os.Stat(l.StateFile); err == nil {
		return nil, fmt.Errorf("cluster: up: %s exists: a cluster %q is up or was not brought down; run down first", l.StateFile, o.Name)
	}
	if linkExists(l.Bridge) {
		return nil, fmt.Errorf("cluster: up: link %s exists: run down first", l.Bridge)
	}
	start := time.Now()
	phase := func(name string, d *time.Duration, f func() error) error {
		t := time.Now()
		err := f()
		*d = time.Since(t)
		if err == nil && o.OnPhase != nil {
			o.OnPhase(name, *d)
		}
		return err
	}
	if !o.SkipDeps {
		if err := phase("deps", &c.Timings.Deps, func() error { return runHack(ctx, l, "deps.sh", "cluster") }); err != nil {
			return nil, fmt.Errorf("cluster: up: %w", err)
		}
	}
	if !o.SkipBuild {
		if err := phase("build", &c.Timings.Build, func() error {
			if err := runHack(ctx, l, "kube-bins.sh", KubeComponents...); err != nil {
				return err
			}
			if comps := thirdPartyComponents(o); len(comps) > 0 {
				_, err := ThirdPartyBins(ctx, l.RepoDir, comps...)
				return err
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("cluster: up: %w", err)
		}
	}
	for _, b := range KubeComponents {
		if _, err := os.Stat(l.bin(b)); err != nil {
			return nil, fmt.Errorf("cluster: up: %s: %w (hack/kube-bins.sh builds it)", b, err)
		}
	}
	if why := missingThirdParty(l); why != "" {
		return nil, fmt.Errorf("cluster: up: %s", why)
	}
	for _, b := range []string{"containerd", "ctr", "runc", "nsenter", "unshare", "ip", "iptables", "curl"} {
		if _, err := exec.LookPath(b); err != nil {
			return nil, fmt.Errorf("cluster: up: %s not installed (hack/deps.sh cluster)", b)
		}
	}
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: up: %w", err)
	}
	st := &state{Options: o, StartedAt: time.Now()}
	if err := writeState(l, st); err != nil {
		return nil, fmt.Errorf("cluster: up: state: %w", err)
	}
	if err := registerCluster(l.StateDir); err != nil {
		return nil, fmt.Errorf("cluster: up: host registry: %w", err)
	}
	if err := phase("pki", &c.Timings.PKI, func() error { return writePKI(l) }); err != nil {
		return nil, fmt.Errorf("cluster: up: pki: %w", err)
	}
	// Images build while the network and the control plane come up.
	imagesDone := make(chan error, 1)
	var tarballs []string
	go func() {
		t := time.Now()
		var err error
		tarballs, err = buildImages(ctx, l)
		c.Timings.Images = time.Since(t)
		imagesDone <- err
	}()
	var imagesErr error
	var imagesOnce sync.Once
	waitImages := func() error {
		imagesOnce.Do(func() {
			imagesErr = <-imagesDone
			if imagesErr == nil && o.OnPhase != nil {
				o.OnPhase("images", c.Timings.Images)
			}
		})
		return imagesErr
	}
	defer waitImages() //nolint:errcheck // never leave the builder running past Up
	if err := phase("network", &c.Timings.Network, func() error { return setupNetwork(ctx, l) }); err != nil {
		return nil, fmt.Errorf("cluster: up: network: %w", err)
	}
	if err := phase("control-plane", &c.Timings.ControlPlane, func() error { return startControlPlane(ctx, l) }); err != nil {
		return nil, fmt.Errorf("cluster: up: control plane: %w", err)
	}
	cs, err := c.Client()
	if err != nil {
		return nil, fmt.Errorf("cluster: up: %w", err)
	}
	images := func() ([]string, error) {
		if err := waitImages(); err != nil {
			return nil, err
		}
		return tarballs, nil // written before imagesDone: waitImages synchronises
	}
	if err := phase("nodes-started", &c.Timings.NodesStarted, func() error { return startNodes(ctx, l, cs, images) }); err != nil {
		return nil, fmt.Errorf("cluster: up: %w", err)
	}
	if err := phase("nodes-ready", &c.Timings.NodesReady, func() error { return waitReady(ctx, l, cs, 3*time.Minute) }); err != nil {
		return nil, fmt.Errorf("cluster: up: %w", err)
	}
	if !o.SkipDNS {
		if err := phase("dns", &c.Timings.DNS, func() error { return deployDNS(ctx, l, cs, 3*time.Minute) }); err != nil {
			return nil, fmt.Errorf("cluster: up: %w", err)
		}
	}
	c.Timings.Total = time.Since(start)
	st.Timings, st.Completed = c.Timings, true
	if err := writeState(l, st); err != nil {
		return nil, fmt.Errorf("cluster: up: state: %w", err)
	}
	return c, nil
}

// Open returns the cluster whose state dir o names; it must have been
// brought up completely.
func Open(o Options) (*Cluster, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	st, err := readState(newLayout(o).StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cluster: open %q: not up (no %s)", o.Name, newLayout(o).StateFile)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: open %q: %w", o.Name, err)
	}
	so := st.Options
	so.StateDir, so.OnPhase = o.StateDir, o.OnPhase
	if so, err = so.withDefaults(); err != nil {
		return nil, err
	}
	return &Cluster{l: newLayout(so), Timings: st.Timings}, nil
}

// runHack runs one of the repository's hack/ scripts.
func runHack(ctx context.Context, l layout, script string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(l.RepoDir, "hack", script), args...)
	cmd.Dir = l.RepoDir
	cmd.Env = append(os.Environ(), "KUBE_VERSION="+l.KubeVersion, "KUBE_BIN_DIR="+l.KubeBinDir, "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("hack/%s %s: %w: %s", script, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// thirdPartyComponents are the hack/image-bins.sh components o needs.
func thirdPartyComponents(o Options) []string {
	switch {
	case o.ConformanceImages:
		return []string{"coredns", "istio-echo", "echo-basic"}
	case !o.SkipDNS:
		return []string{"coredns"}
	}
	return nil
}

// missingThirdParty says which third-party binary Up needs and lacks, or "".
func missingThirdParty(l layout) string {
	vers := map[string]string{"coredns": CoreDNSVersion, "istio-echo": IstioEchoVersion, "echo-basic": GatewayAPIVersion}
	bins := map[string][]string{"coredns": {"coredns"}, "istio-echo": {"istio-echo-server", "istio-echo-client"}, "echo-basic": {"echo-basic"}}
	for _, c := range thirdPartyComponents(l.Options) {
		for _, b := range bins[c] {
			if _, err := os.Stat(filepath.Join(thirdPartyBinDir(l.RepoDir, c, vers[c]), b)); err != nil {
				return fmt.Sprintf("%s: %v (hack/image-bins.sh %s builds it)", b, err, c)
			}
		}
	}
	return ""
}

// buildImages writes the tarballs of the images every node imports before
// its kubelet starts: pause and echo, CoreDNS unless SkipDNS, and the
// conformance images with ConformanceImages.
func buildImages(ctx context.Context, l layout) ([]string, error) {
	var out []string
	for _, gi := range builtinImages() {
		p := filepath.Join(l.ImageDir, imageFile(gi.Ref))
		if err := BuildGoImage(ctx, l.RepoDir, filepath.Join(l.ImageDir, "work"), gi, p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if err := os.RemoveAll(filepath.Join(l.ImageDir, "work")); err != nil {
		return nil, err
	}
	switch {
	case l.ConformanceImages: // includes CoreDNS
		tars, err := buildConformanceImages(ctx, l.RepoDir, l.ImageDir)
		if err != nil {
			return nil, err
		}
		out = append(out, tars...)
	case !l.SkipDNS:
		img := CoreDNSImageSpec(thirdPartyBinDir(l.RepoDir, "coredns", CoreDNSVersion))
		p := filepath.Join(l.ImageDir, imageFile(img.Ref))
		if err := BuildImage(img, p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// startNodes registers the Node objects (with their fixed pod CIDRs), then
// brings every node up in parallel.
func startNodes(ctx context.Context, l layout, cs kubernetes.Interface, images func() ([]string, error)) error {
	for _, n := range l.Nodes {
		obj := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.Name},
			Spec:       corev1.NodeSpec{PodCIDR: n.PodCIDR.String(), PodCIDRs: []string{n.PodCIDR.String()}},
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("node %s: register: %w", n.Name, err)
		}
	}
	errs := make(chan error, len(l.Nodes))
	for _, n := range l.Nodes {
		go func() { errs <- startNode(ctx, l, n, images) }()
	}
	var all []error
	for range l.Nodes {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

func startNode(ctx context.Context, l layout, n node, images func() ([]string, error)) error {
	wrap := func(what string, err error) error { return fmt.Errorf("node %s: %s: %w", n.Name, what, err) }
	procs, err := createNodeCgroups(n)
	if err != nil {
		return wrap("cgroups", err)
	}
	if err := l.writeNodeFiles(n); err != nil {
		return wrap("config", err)
	}
	ctrd, kubelet, proxy := l.nodeDaemons(n, procs)
	if err := startContainerd(ctx, ctrd, n.containerdSock()); err != nil {
		return wrap("containerd", err)
	}
	tars, err := images()
	if err != nil {
		return wrap("images", err)
	}
	for _, t := range tars {
		if err := importImage(ctx, n, t); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	if _, err := kubelet.start(); err != nil {
		return wrap("kubelet", err)
	}
	if _, err := proxy.start(); err != nil {
		return wrap("kube-proxy", err)
	}
	return nil
}

// waitReady waits until every node is Ready without the not-ready taint and
// its kube-proxy reports healthy, and until the default namespace can run pods
// (its ServiceAccount and kube-root-ca.crt exist).
func waitReady(ctx context.Context, l layout, cs kubernetes.Interface, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		why := notReady(ctx, l, cs)
		if why == "" {
			return nil
		}
		for _, n := range l.Nodes {
			_, kubelet, proxy := l.nodeDaemons(n, "")
			for _, d := range []daemon{kubelet, proxy} {
				if !alive(readPID(d.PIDFile)) {
					return fmt.Errorf("node %s: %s exited: %s", n.Name, d.Name, logTail(d.LogFile, 15))
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %s", timeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// notReady says what is not ready yet, or "".
func notReady(ctx context.Context, l layout, cs kubernetes.Interface) string {
	for _, n := range l.Nodes {
		obj, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Sprintf("node %s: %v", n.Name, err)
		}
		ready := false
		for _, c := range obj.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			return fmt.Sprintf("node %s: not Ready", n.Name)
		}
		for _, t := range obj.Spec.Taints {
			if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable {
				return fmt.Sprintf("node %s: taint %s", n.Name, t.Key)
			}
		}
		if out, err := run(ctx, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
			fmt.Sprintf("http://%s:10256/healthz", n.IP)); err != nil || out != "200" {
			return fmt.Sprintf("node %s: kube-proxy healthz %s %v", n.Name, out, err)
		}
	}
	if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		return fmt.Sprintf("serviceaccount default/default: %v", err)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{}); err != nil {
		return fmt.Sprintf("configmap default/kube-root-ca.crt: %v", err)
	}
	return ""
}

// Name returns the cluster's name (Options.Name).
func (c *Cluster) Name() string { return c.l.Name }

// StateDir returns the directory holding all of the cluster's state.
func (c *Cluster) StateDir() string { return c.l.StateDir }

// Kubeconfig returns the path of the admin kubeconfig (system:masters).
func (c *Cluster) Kubeconfig() string { return c.l.Kubeconfig }

// LogDir returns the directory of the components' logs.
func (c *Cluster) LogDir() string { return c.l.LogDir }

// RESTConfig returns an admin client configuration.
func (c *Cluster) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.l.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("cluster: kubeconfig: %w", err)
	}
	return cfg, nil
}

// Client returns an admin clientset.
func (c *Cluster) Client() (*kubernetes.Clientset, error) {
	cfg, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// Nodes describes the cluster's nodes.
func (c *Cluster) Nodes() []NodeInfo {
	var out []NodeInfo
	for _, n := range c.l.Nodes {
		out = append(out, NodeInfo{Name: n.Name, IP: n.IP.String(), PodCIDR: n.PodCIDR.String(), Netns: n.Netns, ContainerdSocket: n.containerdSock(), Cgroup: n.Cgroup})
	}
	return out
}

// InNode runs a short command inside node's network namespace (the host's
// mount namespace, so host tools such as curl and tcpdump are at hand).
func (c *Cluster) InNode(ctx context.Context, nodeName string, args ...string) (string, error) {
	for _, n := range c.l.Nodes {
		if n.Name == nodeName {
			out, err := inNetns(ctx, n.Netns, args...)
			if err != nil {
				return out, fmt.Errorf("cluster: node %s: %w", n.Name, err)
			}
			return out, nil
		}
	}
	return "", fmt.Errorf("cluster: no node %q", nodeName)
}

// LoadImage imports image tarballs (BuildImage's output) into every node.
func (c *Cluster) LoadImage(ctx context.Context, tarballs ...string) error {
	for _, t := range tarballs {
		if _, err := os.Stat(t); err != nil {
			return fmt.Errorf("cluster: load image: %w", err)
		}
		for _, n := range c.l.Nodes {
			if err := importImage(ctx, n, t); err != nil {
				return fmt.Errorf("cluster: %w", err)
			}
		}
	}
	return nil
}

// BuildAndLoad builds gi and imports it into every node.
func (c *Cluster) BuildAndLoad(ctx context.Context, gi GoImage) error {
	if c.l.RepoDir == "" {
		return errors.New("cluster: build image: no repository dir")
	}
	out := filepath.Join(c.l.ImageDir, imageFile(gi.Ref))
	if err := BuildGoImage(ctx, c.l.RepoDir, filepath.Join(c.l.ImageDir, "work"), gi, out); err != nil {
		return err
	}
	return c.LoadImage(ctx, out)
}

// exists reports whether p exists.
func exists(p string) bool {
	_, err := os.Lstat(p)
	return !errors.Is(err, fs.ErrNotExist)
}
