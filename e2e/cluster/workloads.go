package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// Helpers for tests that run workloads on the cluster.

// EchoReply is the JSON the echo image answers every HTTP request with.
type EchoReply struct {
	Pod        string `json:"pod"`
	Namespace  string `json:"namespace"`
	Node       string `json:"node"`
	PodIP      string `json:"podIP"`
	RemoteAddr string `json:"remoteAddr"`
	Host       string `json:"host"`
	Path       string `json:"path"`
}

// EchoApp returns a Deployment of the echo image (HTTP 8080, TCP echo 9000,
// downward-API identity, readiness on /healthz, replicas spread one per node
// as far as possible) and a ClusterIP Service (80 -> 8080 "http", 9000 "tcp").
func EchoApp(namespace, name string, replicas int32) (*appsv1.Deployment, *corev1.Service) {
	labels := map[string]string{"app": name}
	field := func(p string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: p}}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew:           1,
						TopologyKey:       corev1.LabelHostname,
						WhenUnsatisfiable: corev1.DoNotSchedule,
						LabelSelector:     &metav1.LabelSelector{MatchLabels: labels},
					}},
					TerminationGracePeriodSeconds: new(int64),
					Containers: []corev1.Container{{
						Name:            "echo",
						Image:           EchoImage,
						ImagePullPolicy: corev1.PullNever,
						Ports: []corev1.ContainerPort{
							{Name: "http", ContainerPort: 8080},
							{Name: "tcp", ContainerPort: 9000},
						},
						Env: []corev1.EnvVar{
							{Name: "POD_NAME", ValueFrom: field("metadata.name")},
							{Name: "POD_NAMESPACE", ValueFrom: field("metadata.namespace")},
							{Name: "NODE_NAME", ValueFrom: field("spec.nodeName")},
							{Name: "POD_IP", ValueFrom: field("status.podIP")},
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)},
				{Name: "tcp", Port: 9000, TargetPort: intstr.FromInt32(9000)},
			},
		},
	}
	return d, s
}

// WaitPodsReady waits until the pods matching selector in namespace number
// want and are all Ready, and returns them.
func WaitPodsReady(ctx context.Context, cs kubernetes.Interface, namespace, selector string, want int, timeout time.Duration) ([]corev1.Pod, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			last = err.Error()
		} else {
			ready := 0
			var states []string
			for _, p := range pods.Items {
				ok := false
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
						ok = true
					}
				}
				if ok && p.DeletionTimestamp == nil {
					ready++
				}
				states = append(states, fmt.Sprintf("%s=%s/ready:%t", p.Name, p.Status.Phase, ok))
			}
			if ready == want && len(pods.Items) == want {
				return pods.Items, nil
			}
			last = strings.Join(states, " ")
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("cluster: pods %s/%s: not %d ready after %s: %s", namespace, selector, want, timeout, last)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// PodPID returns the host pid of the first container of pod, found through
// its node's containerd (`ctr tasks ls`).
func (c *Cluster) PodPID(ctx context.Context, pod *corev1.Pod) (int, error) {
	if len(pod.Status.ContainerStatuses) == 0 || pod.Status.ContainerStatuses[0].ContainerID == "" {
		return 0, fmt.Errorf("cluster: pod %s/%s: no container yet", pod.Namespace, pod.Name)
	}
	id := strings.TrimPrefix(pod.Status.ContainerStatuses[0].ContainerID, "containerd://")
	for _, n := range c.l.Nodes {
		if n.Name != pod.Spec.NodeName {
			continue
		}
		out, err := run(ctx, "ctr", "-a", n.containerdSock(), "-n", "k8s.io", "tasks", "ls")
		if err != nil {
			return 0, fmt.Errorf("cluster: pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == id {
				return strconv.Atoi(f[1])
			}
		}
		return 0, fmt.Errorf("cluster: pod %s/%s: container %s not in ctr tasks ls of %s", pod.Namespace, pod.Name, id, n.Name)
	}
	return 0, fmt.Errorf("cluster: pod %s/%s: node %q is not ours", pod.Namespace, pod.Name, pod.Spec.NodeName)
}

// InPod runs a host command (curl, ip, tcpdump...) inside pod's network
// namespace: nsenter -t <pid> -n.
func (c *Cluster) InPod(ctx context.Context, pod *corev1.Pod, args ...string) (string, error) {
	pid, err := c.PodPID(ctx, pod)
	if err != nil {
		return "", err
	}
	out, err := run(ctx, "nsenter", append([]string{"-t", strconv.Itoa(pid), "-n", "--"}, args...)...)
	if err != nil {
		return out, fmt.Errorf("cluster: pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return out, nil
}

// ParseEcho decodes an echo reply and checks that it names a pod, so that
// any other HTTP answer (a gateway's 404 page, an empty body) fails.
func ParseEcho(body string) (EchoReply, error) {
	var r EchoReply
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		return r, fmt.Errorf("cluster: not an echo reply: %q: %w", truncate(body, 200), err)
	}
	if r.Pod == "" {
		return r, fmt.Errorf("cluster: echo reply names no pod: %q", truncate(body, 200))
	}
	return r, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Eventually retries f every 200 ms until it succeeds or timeout passes, and
// returns f's last result: a Service answers only once kube-proxy on the
// client's node has programmed its endpoints.
func Eventually(ctx context.Context, timeout time.Duration, f func(context.Context) (string, error)) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		out, err := f(ctx)
		if err == nil || time.Now().After(deadline) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// EchoLookup asks an echo pod to resolve name the way programs in the pod do
// (GET /lookup on its port 8080, which uses the pod's resolv.conf: cluster
// DNS, search list, ndots) and returns the addresses. The host reaches pod
// IPs directly.
func EchoLookup(ctx context.Context, pod *corev1.Pod, name string) ([]string, error) {
	u := "http://" + net.JoinHostPort(pod.Status.PodIP, "8080") + "/lookup?name=" + url.QueryEscape(name)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cluster: pod %s/%s: lookup %s: %w", pod.Namespace, pod.Name, name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var l struct {
		Addrs []string `json:"addrs"`
		Error string   `json:"error"`
	}
	if err := json.Unmarshal(body, &l); err != nil {
		return nil, fmt.Errorf("cluster: pod %s/%s: lookup %s: %d %q", pod.Namespace, pod.Name, name, resp.StatusCode, truncate(string(body), 200))
	}
	if l.Error != "" || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("cluster: pod %s/%s: lookup %s: %s", pod.Namespace, pod.Name, name, l.Error)
	}
	return l.Addrs, nil
}
