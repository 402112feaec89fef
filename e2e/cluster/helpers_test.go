package cluster_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/warren-mesh/warren/e2e/cluster"
)

// upDownOnce brings a cluster up, runs the echo app on every node, checks
// that the cluster really created the state Down must remove (so the leak
// check below cannot pass vacuously), checks one answer through the Service,
// brings it down and asserts the machine is back to before.
func upDownOnce(ctx context.Context, t *testing.T, o cluster.Options, before cluster.Snapshot) {
	t.Helper()
	downed := false
	defer func() {
		if !downed {
			if err := cluster.Down(context.Background(), o); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}()
	t0 := time.Now()
	c, err := cluster.Up(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("up %s (control plane %s, nodes ready %s)", time.Since(t0).Round(time.Millisecond),
		c.Timings.ControlPlane.Round(time.Millisecond), c.Timings.NodesReady.Round(time.Millisecond))
	cs, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	nodes := len(c.Nodes())
	dep, svc := cluster.EchoApp("default", "echo", int32(nodes))
	t1 := time.Now()
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if svc, err = cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods, err := cluster.WaitPodsReady(ctx, cs, "default", "app=echo", nodes, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d echo pods ready in %s", nodes, time.Since(t1).Round(time.Millisecond))
	names := map[string]bool{}
	for _, p := range pods {
		names[p.Name] = true
	}
	url := fmt.Sprintf("http://%s/", svc.Spec.ClusterIP)
	t2 := time.Now()
	out, err := cluster.Eventually(ctx, 30*time.Second, func(ctx context.Context) (string, error) {
		return c.InNode(ctx, c.Nodes()[0].Name, "curl", "-sS", "--max-time", "3", url)
	})
	t.Logf("Service answered %s after its pods were ready", time.Since(t2).Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	r, err := cluster.ParseEcho(out)
	if err != nil {
		t.Fatal(err)
	}
	if !names[r.Pod] {
		t.Fatalf("%s answered by %q, not a backend of %v", url, r.Pod, names)
	}
	if c.DNSIP().IsValid() {
		checkDNS(ctx, t, &pods[0], map[string]string{
			"echo":                           svc.Spec.ClusterIP,
			"echo.default":                   svc.Spec.ClusterIP,
			"echo.default.svc.cluster.local": svc.Spec.ClusterIP,
			"kubernetes.default":             "",
		})
	}

	during, err := cluster.TakeSnapshot(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	requireCreated(t, c, pods, cluster.Leaks(before, during))

	if err := cluster.Down(ctx, o); err != nil {
		t.Fatal(err)
	}
	downed = true
	after, err := cluster.TakeSnapshot(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if leaks := cluster.Leaks(before, after); len(leaks) > 0 {
		t.Fatalf("down left:\n%s", strings.Join(leaks, "\n"))
	}
	if _, err := os.Stat(c.StateDir()); err == nil {
		t.Fatalf("state dir %s survived down", c.StateDir())
	}
}

// requireCreated checks the running cluster's footprint: every kind of state
// Down removes is present.
func requireCreated(t *testing.T, c *cluster.Cluster, pods []corev1.Pod, created []string) {
	t.Helper()
	has := func(substr string) bool {
		for _, e := range created {
			if strings.Contains(e, substr) {
				return true
			}
		}
		return false
	}
	want := []string{
		"process: ",                         // daemons and containers
		"mount: " + c.StateDir() + "/netns", // node netns files
		"/kubelet/root/pods/",               // kubelet pod volume mounts
		" tmpfs",                            // projected service-account token
		" overlay",                          // container rootfs
		"link: " + c.Name() + "-br",
		"link: " + c.Name() + "-n1",
		"route: ",
		"cgroup: ",
	}
	for _, w := range want {
		if !has(w) {
			t.Errorf("running cluster shows no %q among its state:\n%s", w, strings.Join(created, "\n"))
		}
	}
	if len(pods) == 0 {
		t.Error("no pods")
	}
}

// exclusive serializes the tests (of every process on the machine) that use
// cluster name, and removes what a crashed earlier run of it left.
func exclusive(ctx context.Context, t *testing.T, o cluster.Options) {
	t.Helper()
	f, err := os.OpenFile("/run/lock/warren-localkube-"+o.Name+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := cluster.Down(ctx, o); err != nil {
		t.Fatalf("removing a leftover cluster %s: %v", o.Name, err)
	}
}

// haveBinaries reports why the cluster cannot run here, or "".
func haveBinaries(o cluster.Options) string {
	repo, err := cluster.FindRepo()
	if err != nil {
		return err.Error()
	}
	dir := filepath.Join(repo, ".cache", "kube", cluster.DefaultKubeVersion, "bin")
	for _, b := range cluster.KubeComponents {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return fmt.Sprintf("%s not built (hack/kube-bins.sh %s)", b, strings.Join(cluster.KubeComponents, " "))
		}
	}
	for _, b := range []string{"containerd", "runc", "ctr", "curl", "iptables"} {
		if _, err := exec.LookPath(b); err != nil {
			return b + " not installed (hack/deps.sh cluster)"
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		return "CNI plugins not installed (hack/deps.sh cluster)"
	}
	return ""
}

// checkDNS asks an echo pod to resolve each name (as its programs do) and
// compares the single address with want (any address when want is "").
func checkDNS(ctx context.Context, t *testing.T, pod *corev1.Pod, want map[string]string) {
	t.Helper()
	for name, ip := range want {
		var addrs []string
		_, err := cluster.Eventually(ctx, 30*time.Second, func(ctx context.Context) (string, error) {
			var err error
			addrs, err = cluster.EchoLookup(ctx, pod, name)
			return "", err
		})
		if err != nil {
			t.Fatalf("DNS from pod %s: %v", pod.Name, err)
		}
		if len(addrs) != 1 || (ip != "" && addrs[0] != ip) {
			t.Fatalf("DNS from pod %s: %s resolved to %v, want [%s]", pod.Name, name, addrs, ip)
		}
		t.Logf("DNS from pod %s: %s -> %s", pod.Name, name, addrs[0])
	}
}
