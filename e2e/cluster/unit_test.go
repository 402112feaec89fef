package cluster

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"k8s.io/client-go/tools/clientcmd"
)

func testLayout(t *testing.T, o Options) layout {
	t.Helper()
	if o.StateDir == "" {
		o.StateDir = t.TempDir()
	}
	o.RepoDir = "/nonexistent-repo"
	o, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return newLayout(o)
}

func TestOptionsDefaultsAndLayout(t *testing.T) {
	l := testLayout(t, Options{})
	if l.Name != "wk" || l.Nodes[1].Name != "wk-node2" || len(l.Nodes) != 2 {
		t.Fatalf("names: %s %v", l.Name, l.Nodes)
	}
	n := l.Nodes[1]
	if n.IP.String() != "172.30.0.12" || n.PodCIDR.String() != "10.244.2.0/24" || n.HostVeth != "wk-n2" || n.Cgroup != "/wk-node2" {
		t.Fatalf("node 2: %+v", n)
	}
	if l.BridgeIP.String() != "172.30.0.1" || l.ServiceIP.String() != "10.96.0.1" || l.APIServer != "https://172.30.0.1:6443" {
		t.Fatalf("addresses: %s %s %s", l.BridgeIP, l.ServiceIP, l.APIServer)
	}
	iso := testLayout(t, IsolatedOptions("wkt", 4))
	if iso.BridgeIP.String() != "172.30.4.1" || iso.Nodes[0].PodCIDR.String() != "10.248.1.0/24" || iso.EtcdPort != 2419 {
		t.Fatalf("isolated: %s %s %d", iso.BridgeIP, iso.Nodes[0].PodCIDR, iso.EtcdPort)
	}
	o, err := Options{Name: "wkx", RepoDir: "/r"}.withDefaults()
	if err != nil || o.StateDir != DefaultStateDir+"-wkx" {
		t.Fatalf("state dir for another name: %q %v", o.StateDir, err)
	}
}

func TestOptionsRejects(t *testing.T) {
	for _, o := range []Options{
		{Name: "kind"},       // not wk-prefixed
		{Name: "wk-toolong"}, // too long for link names
		{StateDir: "/var"},   // too close to /
		{Nodes: 300},         // too many
		{NodeSubnet: netip.MustParsePrefix("172.30.0.0/29"), Nodes: 2},
		{PodCIDR: netip.MustParsePrefix("10.244.0.0/24")},
		{ExtraCNIPlugins: []json.RawMessage{json.RawMessage(`{"name":"no type"}`)}},
	} {
		o.RepoDir = "/r"
		if _, err := o.withDefaults(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestPKI(t *testing.T) {
	l := testLayout(t, Options{Nodes: 1})
	if err := writePKI(l); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(l.pki("ca.crt"))
	pool.AppendCertsFromPEM(caPEM)
	load := func(f string) *x509.Certificate {
		b, err := os.ReadFile(l.pki(f))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	srv := load("apiserver.crt")
	if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, DNSName: "kubernetes.default.svc"}); err != nil {
		t.Fatal(err)
	}
	if err := srv.VerifyHostname("10.96.0.1"); err != nil {
		t.Fatalf("apiserver cert must carry the kubernetes Service IP: %v", err)
	}
	if err := srv.VerifyHostname("172.30.0.1"); err != nil {
		t.Fatal(err)
	}
	kl := load("wk-node1-kubelet-client.crt")
	if kl.Subject.CommonName != "system:node:wk-node1" || kl.Subject.Organization[0] != "system:nodes" {
		t.Fatalf("kubelet client subject %v: the Node authorizer needs system:node:<name> in system:nodes", kl.Subject)
	}
	if _, err := kl.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	ks := load("wk-node1-kubelet-serving.crt")
	if err := ks.VerifyHostname("172.30.0.11"); err != nil {
		t.Fatalf("kubelet serving cert must name the InternalIP the apiserver dials: %v", err)
	}
	cfg, err := clientcmd.LoadFromFile(l.kubeconfigFor("wk-node1"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster].Server != l.APIServer {
		t.Fatalf("kubeconfig server %v", cfg.Clusters)
	}
	for _, f := range []string{"sa.key", "sa.pub", "admin.crt", "controller-manager.crt", "scheduler.crt", "kube-proxy.crt"} {
		if _, err := os.Stat(l.pki(f)); err != nil {
			t.Error(err)
		}
	}
}

func TestNodeConfigs(t *testing.T) {
	l := testLayout(t, Options{ExtraCNIPlugins: []json.RawMessage{json.RawMessage(`{"type":"warren-cni","log":"x"}`)}})
	n := l.Nodes[0]
	ctrd := l.containerdConfig(n)
	for _, want := range []string{"version = 2", "restrict_oom_score_adj = true", "SystemdCgroup = false", `sandbox_image = "warren.local/pause:3.10"`,
		`Root = "` + n.path("containerd", "runc") + `"`, `conf_dir = "` + n.path("cni", "net.d") + `"`, "netns_mounts_under_state_dir = true",
		`path = "` + n.path("containerd", "opt") + `"`} {
		if !strings.Contains(ctrd, want) {
			t.Errorf("containerd config lacks %q", want)
		}
	}
	kc := l.kubeletConfig(n)
	for _, want := range []string{"failCgroupV1: false", "cgroupRoot: /wk-node1", "cgroupDriver: cgroupfs", "readOnlyPort: 0", "imageGCHighThresholdPercent: 100",
		"makeIPTablesUtilChains: false", "podLogsDir: " + n.path("pod-logs"), "volumePluginDir: " + n.path("kubelet", "volume-plugins"), `nodefs.available: "1%"`} {
		if !strings.Contains(kc, want) {
			t.Errorf("kubelet config lacks %q", want)
		}
	}
	b, err := l.cniConfig(n)
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Name    string           `json:"name"`
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(b, &conf); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, p := range conf.Plugins {
		types = append(types, p["type"].(string))
	}
	if conf.Name != "wk-node1" || strings.Join(types, ",") != "bridge,portmap,warren-cni" {
		t.Fatalf("conflist %s: plugins %v", conf.Name, types)
	}
	ipam := conf.Plugins[0]["ipam"].(map[string]any)
	if conf.Plugins[0]["ipMasq"] != false || !strings.Contains(string(b), `"subnet": "10.244.1.0/24"`) || ipam["dataDir"] != n.path("cni", "ipam") {
		t.Fatalf("bridge plugin: %s", b)
	}
	kp := l.kubeProxyConfig(n)
	for _, want := range []string{"mode: iptables", "maxPerCore: 0", "clusterCIDR: 10.244.0.0/16", "hostnameOverride: wk-node1"} {
		if !strings.Contains(kp, want) {
			t.Errorf("kube-proxy config lacks %q", want)
		}
	}
}

func TestBuildImage(t *testing.T) {
	out := filepath.Join(t.TempDir(), "img.tar")
	img := Image{
		Ref: "warren.local/test:v1",
		Files: map[string]File{
			"/usr/local/bin/app": {Data: []byte("#!/bin/sh\n")},
			"/etc/app.conf":      {Data: []byte("x=1\n")},
			"/bin/sh":            {Symlink: "busybox"},
		},
		Entrypoint: []string{"/usr/local/bin/app"},
	}
	if err := BuildImage(img, out); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(img.Ref)
	im, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := im.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture == "" || cf.Config.Entrypoint[0] != "/usr/local/bin/app" {
		t.Fatalf("config %+v", cf)
	}
	layers, _ := im.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	lb, err := tarFiles(img.Files)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"usr/", "usr/local/", "usr/local/bin/app", "etc/app.conf", "bin/sh"} {
		if !strings.Contains(string(lb), want) {
			t.Errorf("layer lacks %s", want)
		}
	}
	if err := BuildImage(Image{Ref: "warren.local/x:1", Files: map[string]File{"relative": {}}}, out); err == nil {
		t.Fatal("relative path accepted")
	}
	// Deterministic: the same input gives the same layer.
	lb2, _ := tarFiles(img.Files)
	if string(lb) != string(lb2) {
		t.Fatal("layer is not deterministic")
	}
}

func TestMountinfoAndMarks(t *testing.T) {
	mp, fstype := parseMountinfo(`36 35 98:0 /mnt1 /var/lib/with\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue`)
	if mp != "/var/lib/with space" || fstype != "ext3" {
		t.Fatalf("%q %q", mp, fstype)
	}
	if cidrMark("10.244.0.0/16") != "10.244." || cidrMark("172.30.1.0/24") != "172.30.1." {
		t.Fatal(cidrMark("10.244.0.0/16"))
	}
	before := Snapshot{"link": {"wk-br"}, "sysctl": {"kernel/panic=0"}, hostKey: {"recorded"}}
	after := Snapshot{"link": {"wk-br", "wk-n1"}, "sysctl": {"kernel/panic=10"}, "stale-socket": {"/run/containerd/s/ab"}, hostKey: {"recorded"}}
	if got := strings.Join(Leaks(before, after), ";"); got != "link: wk-n1;stale-socket: /run/containerd/s/ab;sysctl: kernel/panic=10" {
		t.Fatalf("leaks %q", got)
	}
	delete(after, hostKey) // another cluster was up: sysctls and stale sockets are not ours to judge
	if got := strings.Join(Leaks(before, after), ";"); got != "link: wk-n1" {
		t.Fatalf("leaks %q", got)
	}
}

func TestVethPattern(t *testing.T) {
	l := testLayout(t, Options{})
	for name, want := range map[string]bool{"wk-n1": true, "wk-n12": true, "wk-br": false, "wk-n": false, "wk-nx": false, "wkd-n1": false} {
		if isNodeVeth(l, name) != want {
			t.Errorf("isNodeVeth(%q) = %t", name, !want)
		}
	}
}
