package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/warren-mesh/warren/redirect/cni"
)

// ControllerOptions configures a Controller.
type ControllerOptions struct {
	// Agent converges capture.
	Agent *Agent
	// NodeName is this node's name: only its pods are captured.
	NodeName string
	// Finder finds namespaces of pods the CNI plugin did not report.
	// Default ProcFinder{}.
	Finder NetnsFinder
	// GetPod fetches a pod the watch has not delivered yet (a CNI ADD can
	// outrun it). Optional.
	GetPod func(ctx context.Context, namespace, name string) (*corev1.Pod, error)
	// Resync retries pods that did not converge. Default 5s.
	Resync time.Duration
	// OnError, if set, sees reconcile errors (binaries log them).
	OnError func(error)
}

// Controller turns Kubernetes state (namespaces, this node's pods) and
// what the CNI plugin reports (sandbox namespaces) into the Agent's
// desired set, and serves the CNI plugin (it implements cni.Service).
type Controller struct {
	opts ControllerOptions

	reconMu sync.Mutex // one compute+Set at a time, newest state last

	mu         sync.Mutex
	namespaces map[string]*corev1.Namespace
	pods       map[string]*corev1.Pod // by uid
	netns      map[string]string      // uid → netns path reported by CNI or found
	fromScan   map[string]bool        // netns found by the Finder (may go stale)
	noScan     map[string]bool        // sandbox deleted: do not look for it in /proc
	cniIPs     map[string][]netip.Addr
	cniOnly    map[string]Desired // enrolled at CNI ADD, not yet seen by the watch
	synced     chan struct{}
	syncOnce   sync.Once
	kick       chan struct{}
}

var _ cni.Service = (*Controller)(nil)

// NewController returns a Controller; it reconciles after SetSynced.
func NewController(opts ControllerOptions) *Controller {
	if opts.Finder == nil {
		opts.Finder = ProcFinder{}
	}
	if opts.Resync <= 0 {
		opts.Resync = 5 * time.Second
	}
	return &Controller{
		opts:       opts,
		namespaces: map[string]*corev1.Namespace{},
		pods:       map[string]*corev1.Pod{},
		netns:      map[string]string{},
		fromScan:   map[string]bool{},
		noScan:     map[string]bool{},
		cniIPs:     map[string][]netip.Addr{},
		cniOnly:    map[string]Desired{},
		synced:     make(chan struct{}),
		kick:       make(chan struct{}, 1),
	}
}

// SetSynced says the watch has delivered the initial state: before it,
// the controller would release every pod it has not heard of yet.
func (c *Controller) SetSynced() {
	c.syncOnce.Do(func() { close(c.synced) })
	c.trigger()
}

func (c *Controller) trigger() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// UpsertNamespace records a namespace (its labels decide enrolment).
func (c *Controller) UpsertNamespace(ns *corev1.Namespace) {
	c.mu.Lock()
	c.namespaces[ns.Name] = ns
	c.mu.Unlock()
	c.trigger()
}

// DeleteNamespace forgets a namespace.
func (c *Controller) DeleteNamespace(name string) {
	c.mu.Lock()
	delete(c.namespaces, name)
	c.mu.Unlock()
	c.trigger()
}

// UpsertPod records a pod of this node.
func (c *Controller) UpsertPod(p *corev1.Pod) {
	c.mu.Lock()
	uid := string(p.UID)
	c.pods[uid] = p
	delete(c.cniOnly, uid)
	c.mu.Unlock()
	c.trigger()
}

// DeletePod forgets a pod.
func (c *Controller) DeletePod(uid string) {
	c.mu.Lock()
	delete(c.pods, uid)
	delete(c.netns, uid)
	delete(c.fromScan, uid)
	delete(c.noScan, uid)
	delete(c.cniIPs, uid)
	delete(c.cniOnly, uid)
	c.mu.Unlock()
	c.trigger()
}

// Run reconciles on every change and every Resync until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	select {
	case <-c.synced:
	case <-ctx.Done():
		return ctx.Err()
	}
	t := time.NewTicker(c.opts.Resync)
	defer t.Stop()
	for {
		if err := c.Reconcile(ctx); err != nil && c.opts.OnError != nil && ctx.Err() == nil {
			c.opts.OnError(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.kick:
		case <-t.C:
		}
	}
}

// Reconcile computes the desired pods and hands them to the Agent.
func (c *Controller) Reconcile(ctx context.Context) error {
	c.reconMu.Lock()
	defer c.reconMu.Unlock()
	specs, err := c.desired()
	if err != nil {
		return err
	}
	err = c.opts.Agent.Set(ctx, specs)
	var se *SetError
	if errors.As(err, &se) {
		// A namespace found in /proc may be gone (the process exited):
		// look again next time.
		c.mu.Lock()
		for uid := range se.Pods {
			if c.fromScan[uid] {
				delete(c.netns, uid)
				delete(c.fromScan, uid)
			}
		}
		c.mu.Unlock()
	}
	return err
}

func (c *Controller) desired() ([]PodSpec, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	nss := make([]corev1.Namespace, 0, len(c.namespaces))
	for _, ns := range c.namespaces {
		nss = append(nss, *ns)
	}
	pods := make([]corev1.Pod, 0, len(c.pods))
	for _, p := range c.pods {
		pods = append(pods, *p)
	}
	want := DesiredPods(nss, pods, c.opts.NodeName)
	for _, d := range c.cniOnly {
		want = append(want, d)
	}
	scanned := false
	var out []PodSpec
	for _, d := range want {
		path := c.netns[d.UID]
		if path == "" && !c.noScan[d.UID] && !scanned {
			scanned = true
			found, err := c.opts.Finder.Scan()
			if err != nil {
				return nil, fmt.Errorf("agent: find pod namespaces: %w", err)
			}
			for uid, p := range found {
				if c.netns[uid] == "" && !c.noScan[uid] {
					c.netns[uid] = p
					c.fromScan[uid] = true
				}
			}
			path = c.netns[d.UID]
		}
		if path == "" {
			continue // no sandbox yet: the CNI ADD will bring it
		}
		if len(d.IPs) == 0 {
			d.IPs = c.cniIPs[d.UID]
		}
		out = append(out, d.Spec(path))
	}
	return out, nil
}

func (c *Controller) waitSynced(ctx context.Context) error {
	select {
	case <-c.synced:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("agent: not synced with the API server yet: %w", ctx.Err())
	}
}

// lookup finds the pod of a CNI request and whether its namespace enrols.
func (c *Controller) lookup(ctx context.Context, req cni.PodRequest) (*corev1.Pod, bool) {
	c.mu.Lock()
	var pod *corev1.Pod
	if req.UID != "" {
		pod = c.pods[req.UID]
	} else {
		for _, p := range c.pods {
			if p.Namespace == req.Namespace && p.Name == req.Name {
				pod = p
			}
		}
	}
	ns := c.namespaces[req.Namespace]
	c.mu.Unlock()
	if pod == nil && c.opts.GetPod != nil {
		if p, err := c.opts.GetPod(ctx, req.Namespace, req.Name); err == nil && (req.UID == "" || string(p.UID) == req.UID) {
			pod = p
		}
	}
	nsAmbient := ns != nil && ns.Labels[LabelDataplaneMode] == ModeAmbient && ns.DeletionTimestamp == nil
	return pod, nsAmbient
}

// CNIAdd implements cni.Service: the pod is captured before this returns,
// if it is to be captured.
func (c *Controller) CNIAdd(ctx context.Context, req cni.PodRequest) (cni.PodResponse, error) {
	if err := c.waitSynced(ctx); err != nil {
		return cni.PodResponse{}, err
	}
	pod, nsAmbient := c.lookup(ctx, req)
	uid := req.UID
	if pod != nil {
		uid = string(pod.UID)
	}
	if uid == "" {
		return cni.PodResponse{}, fmt.Errorf("agent: pod %s/%s: no uid in CNI_ARGS and the pod is unknown", req.Namespace, req.Name)
	}
	var ips []netip.Addr
	for _, s := range req.IPs {
		if a, err := netip.ParseAddr(s); err == nil {
			ips = append(ips, a)
		}
	}
	enrol := nsAmbient
	if pod != nil {
		// The sandbox is on this node whatever the cached spec says.
		enrol = PodEnrolled(pod, nsAmbient, pod.Spec.NodeName)
	}
	c.mu.Lock()
	c.netns[uid] = req.Netns
	delete(c.fromScan, uid)
	delete(c.noScan, uid)
	c.cniIPs[uid] = ips
	if pod != nil {
		c.pods[uid] = pod
		delete(c.cniOnly, uid)
	} else if enrol {
		// Not seen by the watch yet: enrol on the namespace's word (pod
		// labels unknown: capturing is the safe side) until it is.
		c.cniOnly[uid] = Desired{UID: uid, Namespace: req.Namespace, Name: req.Name, IPs: ips}
	}
	c.mu.Unlock()
	if !enrol {
		return cni.PodResponse{Enrolled: false}, nil
	}
	err := c.Reconcile(ctx)
	if c.opts.Agent.Enrolled(uid) {
		return cni.PodResponse{Enrolled: true}, nil
	}
	var se *SetError
	if errors.As(err, &se) && se.Pods[uid] != nil {
		return cni.PodResponse{}, se.Pods[uid]
	}
	if err == nil {
		err = errors.New("not captured")
	}
	return cni.PodResponse{}, fmt.Errorf("agent: pod %s/%s: %w", req.Namespace, req.Name, err)
}

// CNIDel implements cni.Service: capture of the sandbox's namespace ends.
func (c *Controller) CNIDel(ctx context.Context, req cni.PodRequest) error {
	c.mu.Lock()
	for uid, path := range c.netns {
		if path == req.Netns && (req.UID == "" || req.UID == uid) {
			delete(c.netns, uid)
			delete(c.cniOnly, uid)
			c.noScan[uid] = true
		}
	}
	c.mu.Unlock()
	if err := c.waitSynced(ctx); err != nil {
		return nil // nothing enrolled by this agent yet; the first reconcile cleans up
	}
	return c.Reconcile(ctx)
}

// CNICheck implements cni.Service.
func (c *Controller) CNICheck(ctx context.Context, req cni.PodRequest) (cni.PodResponse, error) {
	if err := c.waitSynced(ctx); err != nil {
		return cni.PodResponse{}, err
	}
	pod, nsAmbient := c.lookup(ctx, req)
	enrol := nsAmbient
	uid := req.UID
	if pod != nil {
		enrol = PodEnrolled(pod, nsAmbient, pod.Spec.NodeName)
		uid = string(pod.UID)
	}
	if !enrol {
		return cni.PodResponse{Enrolled: false}, nil
	}
	if !c.opts.Agent.Enrolled(uid) {
		return cni.PodResponse{}, fmt.Errorf("agent: pod %s/%s should be captured and is not", req.Namespace, req.Name)
	}
	return cni.PodResponse{Enrolled: true}, nil
}
