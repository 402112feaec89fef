package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

const ztunnelAdminPort = 15000

// ztunnelAdmin reaches one ztunnel's admin endpoint.
type ztunnelAdmin struct {
	base  string // http://host:port
	where string
	hc    *http.Client
	close func()
}

func (z *ztunnelAdmin) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, z.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := z.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s unreachable: %v", z.where, transportCause(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s: %v", z.where, path, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("%s: %s: not served (HTTP 404): this ztunnel's admin API predates the contract warrenctl reads (docs/warrenctl.md)", z.where, path)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", z.where, path, debugErrorBody(resp.StatusCode, b))
	}
	return b, nil
}

// ztunnelAdminFor returns the admin endpoint: --ztunnel-addr directly,
// else the ztunnel pod on node (or the only one) through a port-forward.
func (e *env) ztunnelAdminFor(ctx context.Context, addr, node string) (*ztunnelAdmin, error) {
	hc := &http.Client{Timeout: e.flags.timeout}
	if addr != "" {
		return &ztunnelAdmin{base: "http://" + addr, where: "ztunnel admin at " + addr, hc: hc, close: func() {}}, nil
	}
	kc, err := e.kube("use --ztunnel-addr HOST:PORT to reach a ztunnel's admin port directly")
	if err != nil {
		return nil, err
	}
	pod, err := pickZtunnel(ctx, kc, e.flags.systemNamespace, e.flags.ztunnelSelector, node)
	if err != nil {
		return nil, err
	}
	if kc.config == nil {
		return nil, fmt.Errorf("ztunnel %s/%s: port-forward needs a real API server", pod.Namespace, pod.Name)
	}
	local, stop, err := portForward(kc, pod, ztunnelAdminPort)
	if err != nil {
		return nil, err
	}
	where := fmt.Sprintf("ztunnel %s/%s on %s (port-forward to :%d)", pod.Namespace, pod.Name, pod.Spec.NodeName, ztunnelAdminPort)
	return &ztunnelAdmin{base: fmt.Sprintf("http://127.0.0.1:%d", local), where: where, hc: hc, close: stop}, nil
}

// pickZtunnel finds the ztunnel pod on node, or the only ztunnel when
// node is empty.
func pickZtunnel(ctx context.Context, kc *kubeClients, ns, selector, node string) (*corev1.Pod, error) {
	l, err := kc.core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, kc.apiError("list ztunnel pods", err)
	}
	var nodes []string
	var match []*corev1.Pod
	for i := range l.Items {
		p := &l.Items[i]
		if podTerminated(p) {
			continue
		}
		nodes = append(nodes, p.Spec.NodeName)
		if node == "" || p.Spec.NodeName == node {
			match = append(match, p)
		}
	}
	switch {
	case len(nodes) == 0:
		return nil, fmt.Errorf("no ztunnel pods in %s (selector %s): is the data plane installed?", ns, selector)
	case node != "" && len(match) == 0:
		return nil, fmt.Errorf("no ztunnel on node %s (ztunnels run on: %s)", node, strings.Join(nodes, ", "))
	case len(match) > 1:
		return nil, usagef("%d ztunnels (on %s): choose one with --node", len(match), strings.Join(nodes, ", "))
	}
	return match[0], nil
}

// portForward forwards a free local port to the pod's port through the
// API server (as kubectl port-forward does) and returns it with a stop
// function.
func portForward(kc *kubeClients, pod *corev1.Pod, port int) (uint16, func(), error) {
	transport, upgrader, err := spdy.RoundTripperFor(kc.config)
	if err != nil {
		return 0, nil, fmt.Errorf("port-forward: %w", err)
	}
	u, err := url.Parse(kc.core.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL().String())
	if err != nil {
		return 0, nil, fmt.Errorf("port-forward: %w", err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stop, ready := make(chan struct{}), make(chan struct{})
	var errOut strings.Builder
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stop, ready, io.Discard, &errOut)
	if err != nil {
		return 0, nil, fmt.Errorf("port-forward to %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		return 0, nil, fmt.Errorf("port-forward to %s/%s:%d: %v %s", pod.Namespace, pod.Name, port, err, strings.TrimSpace(errOut.String()))
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) == 0 {
		close(stop)
		return 0, nil, fmt.Errorf("port-forward to %s/%s:%d: no local port", pod.Namespace, pod.Name, port)
	}
	return ports[0].Local, func() { close(stop) }, nil
}
