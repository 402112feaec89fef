//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/warren-mesh/warren/e2e/cluster"
)

// TestClusterEcho is the local cluster's end-to-end smoke: up with two nodes,
// the echo app as a two-replica Deployment spread over both nodes behind a
// ClusterIP Service, requests to the Service from each node's namespace and
// from inside a pod, asserting which backend answered (a reply that does not
// name one of the two pods fails: without kube-proxy this VM's gateway
// answers 404, which must never pass), logs through the apiserver → kubelet
// path, then down and a check that nothing is left.
func TestClusterEcho(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, cgroups, containerd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	o := cluster.IsolatedOptions("wke", 1)
	o.Nodes = 2
	// One run at a time per machine; remove what a crashed run left.
	lock, err := os.OpenFile("/run/lock/warren-localkube-"+o.Name+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Down(ctx, o); err != nil {
		t.Fatalf("removing a leftover cluster %s: %v", o.Name, err)
	}
	before, err := cluster.TakeSnapshot(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	downed := false
	t.Cleanup(func() {
		if !downed {
			if err := cluster.Down(context.Background(), o); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	o.OnPhase = func(p string, d time.Duration) { t.Logf("up: phase %-13s %s", p, d.Round(time.Millisecond)) }

	start := time.Now()
	c, err := cluster.Up(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING up (incl. deps/build checks): %s, of which nodes ready after start: %s", time.Since(start).Round(time.Millisecond), c.Timings.NodesReady.Round(time.Millisecond))
	cs, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}

	// The Service and a Deployment spread over both nodes.
	ns := "echo-e2e"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSA(ctx, t, c, ns)
	dep, svc := cluster.EchoApp(ns, "echo", 2)
	podStart := time.Now()
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if svc, err = cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods, err := cluster.WaitPodsReady(ctx, cs, ns, "app=echo", 2, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING 2 echo pods ready %s after the Deployment was created", time.Since(podStart).Round(time.Millisecond))
	backends := map[string]string{} // pod -> node
	for _, p := range pods {
		backends[p.Name] = p.Spec.NodeName
	}
	if pods[0].Spec.NodeName == pods[1].Spec.NodeName {
		t.Fatalf("both replicas on %s; want one per node", pods[0].Spec.NodeName)
	}
	vip := svc.Spec.ClusterIP
	url := fmt.Sprintf("http://%s:80/", vip)
	t.Logf("Service %s/echo ClusterIP %s, backends %v", ns, vip, backends)

	// From every node's network namespace (kube-proxy's OUTPUT rules).
	for _, n := range c.Nodes() {
		seen := askService(ctx, t, url, backends, func(ctx context.Context) (string, error) {
			return c.InNode(ctx, n.Name, "curl", "-sS", "--max-time", "3", url)
		})
		t.Logf("from node %s: answers per backend %v", n.Name, seen)
	}
	// From inside each pod (PREROUTING on its node, cross-node routing, and
	// the same-node hairpin through the CNI bridge).
	for i := range pods {
		p := &pods[i]
		seen := askService(ctx, t, url, backends, func(ctx context.Context) (string, error) {
			return c.InPod(ctx, p, "curl", "-sS", "--max-time", "3", url)
		})
		t.Logf("from pod %s on %s: answers per backend %v", p.Name, p.Spec.NodeName, seen)
	}
	// A pod IP on the other node, directly: the source address must survive
	// (no masquerade between nodes).
	out, err := c.InPod(ctx, &pods[0], "curl", "-sS", "--max-time", "3", fmt.Sprintf("http://%s:8080/", pods[1].Status.PodIP))
	if err != nil {
		t.Fatal(err)
	}
	r, err := cluster.ParseEcho(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Pod != pods[1].Name || !strings.HasPrefix(r.RemoteAddr, pods[0].Status.PodIP+":") {
		t.Fatalf("pod-to-pod across nodes: answer %+v, want pod %s seeing source %s", r, pods[1].Name, pods[0].Status.PodIP)
	}
	// Cluster DNS: from a pod on each node, the Service by its short name
	// (search list), <svc>.<ns>, the FQDN, and a Service in another namespace.
	if !c.DNSIP().IsValid() {
		t.Fatal("cluster DNS is off; Up deploys it by default")
	}
	kube, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range pods {
		for name, want := range map[string]string{
			"echo":                              vip,
			"echo." + ns:                        vip,
			"echo." + ns + ".svc.cluster.local": vip,
			"kubernetes.default":                kube.Spec.ClusterIP,
		} {
			var addrs []string
			_, err := cluster.Eventually(ctx, 30*time.Second, func(ctx context.Context) (string, error) {
				var err error
				addrs, err = cluster.EchoLookup(ctx, &pods[i], name)
				return "", err
			})
			if err != nil || len(addrs) != 1 || addrs[0] != want {
				t.Fatalf("DNS from pod %s on %s: %s -> %v %v, want %s", pods[i].Name, pods[i].Spec.NodeName, name, addrs, err, want)
			}
		}
	}
	t.Logf("cluster DNS %s answers from pods on every node", c.DNSIP())

	// Logs go apiserver → kubelet (client cert, kubelet serving cert checked
	// against the CA, InternalIP address type).
	logs, err := cs.CoreV1().Pods(ns).GetLogs(pods[0].Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("logs through the kubelet: %v", err)
	}
	if !strings.Contains(string(logs), "echo: pod "+pods[0].Name) {
		t.Fatalf("logs of %s: %q", pods[0].Name, logs)
	}

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Processes {
		t.Logf("RSS %-26s %4d MiB  node cgroup: %d pids %d MiB", p.Name, p.RSSKiB/1024, p.TreePIDs, p.TreeRSSKiB/1024)
	}

	downStart := time.Now()
	if err := cluster.Down(ctx, o); err != nil {
		t.Fatal(err)
	}
	downed = true
	t.Logf("TIMING down %s", time.Since(downStart).Round(time.Millisecond))
	after, err := cluster.TakeSnapshot(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if leaks := cluster.Leaks(before, after); len(leaks) > 0 {
		t.Fatalf("down left:\n%s", strings.Join(leaks, "\n"))
	}
}

// askService waits until every backend has answered through get, then sends
// 20 requests and asserts every answer names one of the backends and both
// backends answered.
func askService(ctx context.Context, t *testing.T, url string, backends map[string]string, get func(context.Context) (string, error)) map[string]int {
	t.Helper()
	// Until kube-proxy on the client's node has programmed every endpoint,
	// requests may fail or reach only some backends: wait (30 s at most)
	// until each backend has answered once. Every answer must still come
	// from a backend; after that all 20 must be right.
	first := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(first) < len(backends) {
		out, err := get(ctx)
		if err == nil {
			r, perr := cluster.ParseEcho(out)
			if perr != nil {
				t.Fatalf("GET %s: %v", url, perr)
			}
			if _, ok := backends[r.Pod]; !ok {
				t.Fatalf("GET %s answered by %q, not one of the backends %v", url, r.Pod, backends)
			}
			first[r.Pod] = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: after 30 s only %v of %v answered (last error: %v)", url, first, backends, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	seen := map[string]int{}
	for range 20 {
		out, err := get(ctx)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		r, err := cluster.ParseEcho(out)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		if node, ok := backends[r.Pod]; !ok || r.Node != node {
			t.Fatalf("GET %s answered by %q on %q, not one of the backends %v", url, r.Pod, r.Node, backends)
		}
		seen[r.Pod]++
	}
	if len(seen) != len(backends) {
		t.Fatalf("GET %s: only %v answered of %v", url, seen, backends)
	}
	return seen
}

// waitSA waits for the namespace's default ServiceAccount (the pods need it).
func waitSA(ctx context.Context, t *testing.T, c *cluster.Cluster, ns string) {
	t.Helper()
	cs, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("serviceaccount %s/default: %v", ns, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
