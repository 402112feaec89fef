package agent_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/warren-mesh/warren/redirect/agent"
	"github.com/warren-mesh/warren/redirect/loader"
)

func ns(name string, labels map[string]string) corev1.Namespace {
	return corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func kpod(namespace, name, uid, node string, labels, annotations map[string]string) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, UID: types.UID(uid), Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: "10.244.0.5"}, {IP: "fd00::5"}}},
	}
}

var ambient = map[string]string{agent.LabelDataplaneMode: agent.ModeAmbient}

func TestDesiredPods(t *testing.T) {
	nss := []corev1.Namespace{ns("shop", ambient), ns("plain", nil), ns("other", map[string]string{agent.LabelDataplaneMode: "sidecar"})}
	hostNet := kpod("shop", "hostnet", "u-host", "node-a", nil, nil)
	hostNet.Spec.HostNetwork = true
	done := kpod("shop", "job", "u-done", "node-a", nil, nil)
	done.Status.Phase = corev1.PodSucceeded
	pods := []corev1.Pod{
		kpod("shop", "cart", "u-cart", "node-a", nil, nil),
		kpod("shop", "cart-b", "u-cart-b", "node-b", nil, nil),                                                       // another node
		kpod("shop", "waypoint", "u-wp", "node-a", map[string]string{agent.LabelDataplaneMode: agent.ModeNone}, nil), // opted out
		kpod("plain", "web", "u-web", "node-a", nil, nil),                                                            // namespace not enrolled
		kpod("plain", "opt-in", "u-optin", "node-a", ambient, nil),                                                   // pod opts in
		kpod("other", "x", "u-x", "node-a", nil, nil),
		kpod("gone", "y", "u-y", "node-a", nil, nil), // namespace unknown
		hostNet, done,
		kpod("shop", "ann", "u-ann", "node-a", nil, map[string]string{
			agent.AnnotationExcludeOutboundPorts: "9000, 22,22,bogus,0",
			agent.AnnotationExcludeInboundPorts:  "15020",
			agent.AnnotationExcludeOutboundCIDRs: "10.96.0.0/12, 192.0.2.7, fd00::/8, nope",
		}),
	}
	got := agent.DesiredPods(nss, pods, "node-a")
	var uids []string
	for _, d := range got {
		uids = append(uids, d.UID)
	}
	if want := []string{"u-ann", "u-cart", "u-optin"}; !slices.Equal(uids, want) {
		t.Fatalf("desired %v, want %v", uids, want)
	}
	ann := got[0]
	wantCfg := loader.PodConfig{
		ExcludeOutboundPorts: []uint16{22, 9000},
		ExcludeInboundPorts:  []uint16{15020},
		ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("fd00::/8")},
	}
	if !ann.Config.Equal(wantCfg) {
		t.Errorf("config %+v, want %+v", ann.Config, wantCfg)
	}
	if len(ann.Warnings) != 3 {
		t.Errorf("warnings %v, want 3 (bogus, 0, nope)", ann.Warnings)
	}
	if len(ann.IPs) != 2 || ann.IPs[1] != netip.MustParseAddr("fd00::5") {
		t.Errorf("IPs %v", ann.IPs)
	}
	s := ann.Spec("/proc/1/ns/net")
	if s.Netns != "/proc/1/ns/net" || s.UID != "u-ann" || s.Namespace != "shop" {
		t.Errorf("Spec %+v", s)
	}
	// Pure and deterministic.
	if again := agent.DesiredPods(nss, pods, "node-a"); len(again) != len(got) || again[2].UID != got[2].UID {
		t.Error("not deterministic")
	}
	if len(agent.DesiredPods(nil, pods, "node-a")) != 1 { // only the pod that opts in itself
		t.Error("without namespaces only pod opt-in should count")
	}
}

func TestPodUIDFromCgroup(t *testing.T) {
	for in, want := range map[string]string{
		"0::/kubepods/besteffort/pod3b1e6b8e-0b1f-4c4e-9d55-5b8a2f3c1d20/abcd\n":                                                                "3b1e6b8e-0b1f-4c4e-9d55-5b8a2f3c1d20",
		"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3b1e6b8e_0b1f_4c4e_9d55_5b8a2f3c1d20.slice/cri-containerd-1.scope\n": "3b1e6b8e-0b1f-4c4e-9d55-5b8a2f3c1d20",
		"4:memory:/user.slice\n0::/user.slice\n":                                                                                                "",
	} {
		if got := agent.PodUIDFromCgroup([]byte(in)); got != want {
			t.Errorf("PodUIDFromCgroup(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestProcFinder(t *testing.T) {
	root := t.TempDir()
	write := func(pid, cgroup string) {
		dir := filepath.Join(root, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	uid := "3b1e6b8e-0b1f-4c4e-9d55-5b8a2f3c1d20"
	write("120", "0::/node1/kubepods/pod"+uid+"/app\n")
	write("101", "0::/node1/kubepods/pod"+uid+"/pause\n")
	write("7", "0::/system.slice/sshd.service\n")
	write("self", "0::/ignored\n")
	got, err := agent.ProcFinder{Root: root}.Scan()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[uid] != filepath.Join(root, "101", "ns", "net") {
		t.Errorf("Scan = %v", got)
	}
}
