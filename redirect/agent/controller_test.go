package agent_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/warren-mesh/warren/redirect/agent"
	"github.com/warren-mesh/warren/redirect/cni"
)

// finder is a NetnsFinder with a fixed view of /proc.
type finder struct {
	mu    sync.Mutex
	found map[string]string
	scans int
}

func (f *finder) Scan() (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scans++
	out := map[string]string{}
	for k, v := range f.found {
		out[k] = v
	}
	return out, nil
}

type ctl struct {
	*fakes
	c  *agent.Controller
	fd *finder
}

func newCtl(t *testing.T) *ctl {
	f := newFakes(t)
	fd := &finder{found: map[string]string{}}
	c := agent.NewController(agent.ControllerOptions{Agent: f.a, NodeName: "node-a", Finder: fd})
	return &ctl{fakes: f, c: c, fd: fd}
}

func (c *ctl) reconcile(t *testing.T) {
	t.Helper()
	if err := c.c.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestControllerFollowsLabelsLive(t *testing.T) {
	c := newCtl(t)
	c.c.SetSynced()
	shop := ns("shop", nil)
	c.c.UpsertNamespace(&shop)
	p := kpod("shop", "cart", "u-cart", "node-a", nil, nil)
	c.c.UpsertPod(&p)
	c.fd.found["u-cart"] = netnsPath(3) // a running pod, found in /proc
	c.reconcile(t)
	if c.a.Enrolled("u-cart") {
		t.Fatal("enrolled before its namespace was")
	}
	shop = ns("shop", ambient)
	c.c.UpsertNamespace(&shop)
	c.reconcile(t)
	if !c.a.Enrolled("u-cart") {
		t.Fatal("namespace label did not enrol the running pod")
	}
	if got := enrolled(t, c.dp); len(got) != 1 || got[0] != 3 {
		t.Errorf("enrolled netns %v", got)
	}
	p.Labels = map[string]string{agent.LabelDataplaneMode: agent.ModeNone}
	c.c.UpsertPod(&p)
	c.reconcile(t)
	if c.a.Enrolled("u-cart") || len(enrolled(t, c.dp)) != 0 {
		t.Fatal("pod opt-out did not release it")
	}
	p.Labels = nil
	c.c.UpsertPod(&p)
	c.reconcile(t)
	c.c.DeletePod("u-cart")
	c.reconcile(t)
	if len(enrolled(t, c.dp)) != 0 {
		t.Fatal("deleted pod still captured")
	}
}

func TestControllerRunReactsToEvents(t *testing.T) {
	c := newCtl(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.c.Run(ctx)
	shop := ns("shop", ambient)
	c.c.UpsertNamespace(&shop)
	p := kpod("shop", "cart", "u-cart", "node-a", nil, nil)
	c.fd.mu.Lock()
	c.fd.found["u-cart"] = netnsPath(2)
	c.fd.mu.Unlock()
	c.c.UpsertPod(&p)
	time.Sleep(50 * time.Millisecond)
	if c.a.Enrolled("u-cart") {
		t.Fatal("reconciled before the watch was synced")
	}
	c.c.SetSynced()
	waitUntil(t, func() bool { return c.a.Enrolled("u-cart") })
	shop = ns("shop", nil)
	c.c.UpsertNamespace(&shop)
	waitUntil(t, func() bool { return !c.a.Enrolled("u-cart") })
}

func waitUntil(t testing.TB, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not reached")
}

func cniReq(name, uid string, netns uint64) cni.PodRequest {
	return cni.PodRequest{Namespace: "shop", Name: name, UID: uid, ContainerID: "c-" + name, Netns: netnsPath(netns), IPs: []string{"10.244.0.9"}}
}

func TestControllerCNIAddEnrolsBeforeReturning(t *testing.T) {
	c := newCtl(t)
	c.c.SetSynced()
	shop := ns("shop", ambient)
	c.c.UpsertNamespace(&shop)
	p := kpod("shop", "cart", "u-cart", "node-a", nil, map[string]string{agent.AnnotationExcludeOutboundPorts: "5432"})
	p.Status = corev1.PodStatus{Phase: corev1.PodPending} // no IPs yet at sandbox creation
	c.c.UpsertPod(&p)
	resp, err := c.c.CNIAdd(context.Background(), cniReq("cart", "u-cart", 4))
	if err != nil || !resp.Enrolled {
		t.Fatalf("CNIAdd = %+v, %v", resp, err)
	}
	if !c.a.Enrolled("u-cart") {
		t.Fatal("not enrolled when CNIAdd returned")
	}
	m, _ := c.dp.Enrolled()
	if len(m[4].ExcludeOutboundPorts) != 1 {
		t.Errorf("annotation lost: %+v", m[4])
	}
	if zp, _ := c.zt.Pod("u-cart"); len(zp.IPs) != 1 || zp.IPs[0].String() != "10.244.0.9" {
		t.Errorf("ztunnel got IPs %v, want the CNI result's", zp.IPs)
	}
	if r, err := c.c.CNICheck(context.Background(), cniReq("cart", "u-cart", 4)); err != nil || !r.Enrolled {
		t.Errorf("CNICheck = %+v, %v", r, err)
	}
	// DEL: capture ends and /proc is not searched for the dying sandbox.
	c.fd.found["u-cart"] = netnsPath(4)
	if err := c.c.CNIDel(context.Background(), cniReq("cart", "u-cart", 4)); err != nil {
		t.Fatal(err)
	}
	if c.a.Enrolled("u-cart") || len(enrolled(t, c.dp)) != 0 {
		t.Error("still captured after CNI DEL")
	}
	if _, err := c.c.CNICheck(context.Background(), cniReq("cart", "u-cart", 4)); err == nil {
		t.Error("CNICheck passed for a pod that should be captured and is not")
	}
}

func TestControllerCNIAddNotEnrolledThenLabel(t *testing.T) {
	c := newCtl(t)
	c.c.SetSynced()
	plain := ns("shop", nil)
	c.c.UpsertNamespace(&plain)
	p := kpod("shop", "web", "u-web", "node-a", nil, nil)
	c.c.UpsertPod(&p)
	resp, err := c.c.CNIAdd(context.Background(), cniReq("web", "u-web", 5))
	if err != nil || resp.Enrolled {
		t.Fatalf("CNIAdd in a plain namespace = %+v, %v", resp, err)
	}
	if len(enrolled(t, c.dp)) != 0 {
		t.Fatal("captured a pod of a plain namespace")
	}
	// Enrolling the namespace later captures the running pod through the
	// netns the CNI plugin reported, without searching /proc.
	amb := ns("shop", ambient)
	c.c.UpsertNamespace(&amb)
	c.reconcile(t)
	if got := enrolled(t, c.dp); len(got) != 1 || got[0] != 5 {
		t.Fatalf("enrolled %v", got)
	}
	if c.fd.scans != 0 {
		t.Errorf("/proc searched %d times", c.fd.scans)
	}
}

func TestControllerCNIAddOutrunsWatch(t *testing.T) {
	c := newCtl(t)
	c.c.SetSynced()
	amb := ns("shop", ambient)
	c.c.UpsertNamespace(&amb)
	resp, err := c.c.CNIAdd(context.Background(), cniReq("new", "u-new", 6))
	if err != nil || !resp.Enrolled {
		t.Fatalf("CNIAdd before the watch saw the pod = %+v, %v", resp, err)
	}
	c.reconcile(t) // a resync in between keeps it
	if !c.a.Enrolled("u-new") {
		t.Fatal("released before the watch saw the pod")
	}
	p := kpod("shop", "new", "u-new", "node-a", map[string]string{agent.LabelDataplaneMode: agent.ModeNone}, nil)
	c.c.UpsertPod(&p)
	c.reconcile(t)
	if c.a.Enrolled("u-new") {
		t.Fatal("the pod's opt-out label, once seen, did not release it")
	}
}

func TestControllerCNIAddFailsClosed(t *testing.T) {
	c := newCtl(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.c.CNIAdd(ctx, cniReq("a", "u-a", 1)); err == nil || !strings.Contains(err.Error(), "not synced") {
		t.Errorf("CNIAdd before sync: %v", err)
	}
	c.c.SetSynced()
	amb := ns("shop", ambient)
	c.c.UpsertNamespace(&amb)
	c.zt.SetConnected(false)
	if _, err := c.c.CNIAdd(context.Background(), cniReq("a", "u-a", 1)); err == nil || !strings.Contains(err.Error(), "ztunnel not connected") {
		t.Errorf("CNIAdd without ztunnel: %v", err)
	}
	if _, err := c.c.CNIAdd(context.Background(), cni.PodRequest{Namespace: "shop", Name: "nouid", Netns: netnsPath(2)}); err == nil {
		t.Error("CNIAdd without a uid for an unknown pod succeeded")
	}
}

func TestControllerGetPod(t *testing.T) {
	f := newFakes(t)
	p := kpod("shop", "x", "u-x", "node-a", map[string]string{agent.LabelDataplaneMode: agent.ModeNone}, nil)
	c := agent.NewController(agent.ControllerOptions{Agent: f.a, NodeName: "node-a", Finder: &finder{},
		GetPod: func(ctx context.Context, namespace, name string) (*corev1.Pod, error) { return &p, nil }})
	c.SetSynced()
	amb := ns("shop", ambient)
	c.UpsertNamespace(&amb)
	resp, err := c.CNIAdd(context.Background(), cniReq("x", "u-x", 7))
	if err != nil || resp.Enrolled {
		t.Errorf("CNIAdd of an opted-out pod fetched from the API = %+v, %v", resp, err)
	}
}
