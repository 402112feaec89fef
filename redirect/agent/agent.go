package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/warren-mesh/warren/redirect/loader"
	"github.com/warren-mesh/warren/redirect/nodeproto"
)

// PodSpec is one pod the agent must capture.
type PodSpec struct {
	UID       string
	Namespace string
	Name      string
	IPs       []netip.Addr
	// Netns is the path of the pod's network namespace (a CNI netns path,
	// /proc/<pid>/ns/net of one of its processes, /var/run/netns/<name>).
	Netns string
	// Config is what capture leaves alone (from the pod's annotations).
	Config loader.PodConfig
}

// Validate checks the fields the agent needs.
func (p PodSpec) Validate() error {
	switch {
	case p.UID == "":
		return fmt.Errorf("agent: pod %s/%s without uid", p.Namespace, p.Name)
	case p.Namespace == "" || p.Name == "":
		return fmt.Errorf("agent: pod %s without namespace or name", p.UID)
	case p.Netns == "":
		return fmt.Errorf("agent: pod %s/%s without netns", p.Namespace, p.Name)
	}
	return p.Config.Validate()
}

func (p PodSpec) key() string { return p.Namespace + "/" + p.Name }

func (p PodSpec) proto(cookie uint64) nodeproto.Pod {
	return nodeproto.Pod{UID: p.UID, Namespace: p.Namespace, Name: p.Name, IPs: slices.Clone(p.IPs), NetnsCookie: cookie}
}

// Ztunnel is the node's ztunnel as the agent sees it; *nodeproto.Server
// and *nodeproto.Fake implement it.
type Ztunnel interface {
	AddPod(ctx context.Context, pod nodeproto.Pod, netns *os.File) ([]*os.File, error)
	RemovePod(ctx context.Context, uid string) error
}

// Options configures an Agent.
type Options struct {
	// Dataplane is the kernel side (loader.Open, or loader.NewFake()).
	Dataplane loader.Dataplane
	// Ztunnel receives the enrolled pods.
	Ztunnel Ztunnel
	// RequestTimeout bounds one request to ztunnel. Default 5s.
	RequestTimeout time.Duration
	// ProbeSources are addresses inbound steering leaves alone: the node's
	// own, so kubelet probes reach the app in strict mode too.
	ProbeSources []netip.Addr
	// SkipCgroups are cgroup v2 ids never captured, besides the connected
	// ztunnel's (found from its socket peer's pid).
	SkipCgroups []uint64
}

// SetError lists the pods a Set could not converge; the others did.
type SetError struct {
	Pods map[string]error // by pod uid
}

func (e *SetError) Error() string {
	uids := make([]string, 0, len(e.Pods))
	for uid := range e.Pods {
		uids = append(uids, uid)
	}
	sort.Strings(uids)
	var b strings.Builder
	fmt.Fprintf(&b, "agent: %d pod(s) not converged:", len(uids))
	for _, uid := range uids {
		fmt.Fprintf(&b, " %s: %v;", uid, e.Pods[uid])
	}
	return strings.TrimSuffix(b.String(), ";")
}

type podEntry struct {
	spec     PodSpec
	ns       loader.Netns
	enrolled bool // capture on in the dataplane
	adopted  bool // found enrolled by a previous agent; ztunnel gets it with the snapshot
	err      error
}

// Agent converges the node's capture on the set of enrolled pods it is
// given (Set), and hands those pods to ztunnel.
type Agent struct {
	opts Options

	mu       sync.Mutex
	pods     map[string]*podEntry // by uid
	ztCgroup uint64
	synced   chan struct{}
	syncOnce sync.Once
}

// New returns an Agent. Nothing changes until the first Set.
func New(opts Options) (*Agent, error) {
	if opts.Dataplane == nil || opts.Ztunnel == nil {
		return nil, errors.New("agent: Options.Dataplane and Options.Ztunnel are required")
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	a := &Agent{opts: opts, pods: map[string]*podEntry{}, synced: make(chan struct{})}
	if err := opts.Dataplane.SetProbeSources(opts.ProbeSources); err != nil {
		return nil, err
	}
	if err := a.setSkipCgroupsLocked(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Agent) setSkipCgroupsLocked() error {
	ids := slices.Clone(a.opts.SkipCgroups)
	if a.ztCgroup != 0 {
		ids = append(ids, a.ztCgroup)
	}
	return a.opts.Dataplane.SetSkipCgroups(ids)
}

// Set makes the captured pods exactly pods: new pods are handed to ztunnel
// and captured, changed ones updated, missing ones released, and pods a
// previous agent left enrolled are adopted without a gap. It is
// idempotent. A *SetError lists the pods that could not converge (for
// example while ztunnel is not connected); they are retried by the next
// Set and by ztunnel's next connect.
func (a *Agent) Set(ctx context.Context, pods []PodSpec) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer a.syncOnce.Do(func() { close(a.synced) })
	failed := map[string]error{}
	desired := map[string]PodSpec{}
	for _, p := range pods {
		if err := p.Validate(); err != nil {
			failed[p.UID] = err
			continue
		}
		if _, dup := desired[p.UID]; dup {
			failed[p.UID] = fmt.Errorf("agent: pod uid %s given twice", p.UID)
			continue
		}
		desired[p.UID] = p
	}
	// Releases first: a pod recreated under a new uid must not find its
	// predecessor's state.
	for uid, e := range a.pods {
		if _, ok := desired[uid]; !ok {
			a.releaseLocked(ctx, e)
			delete(a.pods, uid)
		}
	}
	kernel, err := a.opts.Dataplane.Enrolled()
	if err != nil {
		return err
	}
	for _, uid := range sortedKeys(desired) {
		if err := a.convergeLocked(ctx, desired[uid], kernel); err != nil {
			failed[uid] = err
		}
	}
	// Enrolled netns that no desired pod owns: left by a previous agent
	// for pods that are gone, or by a sandbox that was replaced.
	owned := map[uint64]bool{}
	for _, e := range a.pods {
		if e.ns.File != nil {
			owned[e.ns.Cookie] = true
		}
	}
	for c := range kernel {
		if !owned[c] {
			if err := a.opts.Dataplane.Release(c); err != nil {
				failed[fmt.Sprintf("netns-%d", c)] = err
			}
		}
	}
	if len(failed) > 0 {
		return &SetError{Pods: failed}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// convergeLocked brings one desired pod to its state.
func (a *Agent) convergeLocked(ctx context.Context, spec PodSpec, kernel map[uint64]loader.PodConfig) error {
	e := a.pods[spec.UID]
	if e != nil && e.spec.Netns != spec.Netns {
		// New sandbox (or a different path): compare by cookie.
		ns, err := a.opts.Dataplane.OpenNetns(spec.Netns)
		if err != nil {
			a.releaseLocked(ctx, e)
			delete(a.pods, spec.UID)
			return fmt.Errorf("agent: pod %s: %w", spec.key(), err)
		}
		if ns.Cookie == e.ns.Cookie {
			e.ns.Close()
			e.ns = ns
		} else {
			ns.Close()
			a.releaseLocked(ctx, e)
			delete(a.pods, spec.UID)
			e = nil
		}
	}
	if e == nil {
		ns, err := a.opts.Dataplane.OpenNetns(spec.Netns)
		if err != nil {
			return fmt.Errorf("agent: pod %s: %w", spec.key(), err)
		}
		e = &podEntry{spec: spec, ns: ns}
		a.pods[spec.UID] = e
		if _, ok := kernel[ns.Cookie]; ok {
			// Enrolled by a previous agent: keep capture, refresh below;
			// ztunnel learns the pod from the snapshot of its next connect.
			e.enrolled, e.adopted = true, true
		}
	}
	e.spec = spec
	if !e.enrolled {
		e.err = a.enrolLocked(ctx, a.opts.Ztunnel, e)
		return e.err
	}
	if cur, ok := kernel[e.ns.Cookie]; !ok || !cur.Equal(spec.Config) || e.adopted {
		if err := a.opts.Dataplane.Enrol(e.ns, spec.Config, nil); err != nil {
			e.err = fmt.Errorf("agent: pod %s: %w", spec.key(), err)
			return e.err
		}
		e.adopted = false
	}
	e.err = nil
	return nil
}

// enrolLocked hands the pod to ztunnel, then switches capture on with
// ztunnel's inbound listeners.
func (a *Agent) enrolLocked(ctx context.Context, zt Ztunnel, e *podEntry) error {
	rctx, cancel := context.WithTimeout(ctx, a.opts.RequestTimeout)
	defer cancel()
	ls, err := zt.AddPod(rctx, e.spec.proto(e.ns.Cookie), e.ns.File)
	if err != nil {
		return fmt.Errorf("agent: pod %s: hand to ztunnel: %w", e.spec.key(), err)
	}
	defer closeFiles(ls)
	if err := a.opts.Dataplane.Enrol(e.ns, e.spec.Config, ls); err != nil {
		zt.RemovePod(rctx, e.spec.UID)
		return fmt.Errorf("agent: pod %s: %w", e.spec.key(), err)
	}
	e.enrolled = true
	return nil
}

// releaseLocked switches capture off, then tells ztunnel.
func (a *Agent) releaseLocked(ctx context.Context, e *podEntry) {
	if e.enrolled {
		a.opts.Dataplane.Release(e.ns.Cookie)
		rctx, cancel := context.WithTimeout(ctx, a.opts.RequestTimeout)
		a.opts.Ztunnel.RemovePod(rctx, e.spec.UID)
		cancel()
	}
	e.enrolled = false
	e.ns.Close()
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// Snapshot is the nodeproto OnConnect hook: once the first Set has run
// (so the snapshot is complete), it exempts the new ztunnel's cgroup from
// capture, hands it every enrolled pod, installs its inbound listeners,
// enrols pods that were waiting for a ztunnel, and ends the snapshot.
func (a *Agent) Snapshot(ctx context.Context, c *nodeproto.Conn) error {
	select {
	case <-a.synced:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.Done():
		return c.Err()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if pid := c.PeerPID(); pid > 0 {
		cg, err := loader.CgroupOfPID(pid)
		if err != nil {
			return fmt.Errorf("agent: cgroup of ztunnel (pid %d): %w", pid, err)
		}
		id, err := loader.CgroupID(cg)
		if err != nil {
			return err
		}
		a.ztCgroup = id
		if err := a.setSkipCgroupsLocked(); err != nil {
			return err
		}
	}
	var errs []error
	for _, uid := range sortedKeys(a.pods) {
		e := a.pods[uid]
		if e.enrolled {
			rctx, cancel := context.WithTimeout(ctx, a.opts.RequestTimeout)
			ls, err := c.AddPod(rctx, e.spec.proto(e.ns.Cookie), e.ns.File)
			cancel()
			if err != nil {
				errs = append(errs, err)
				continue
			}
			err = a.opts.Dataplane.Enrol(e.ns, e.spec.Config, ls)
			closeFiles(ls)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			e.adopted = false
			continue
		}
		e.err = a.enrolLocked(ctx, c, e)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	rctx, cancel := context.WithTimeout(ctx, a.opts.RequestTimeout)
	defer cancel()
	return c.SnapshotDone(rctx)
}

// PodStatus reports one desired pod.
type PodStatus struct {
	UID, Namespace, Name string
	NetnsCookie          uint64
	Enrolled             bool
	Err                  error
}

// Status returns the desired pods and whether each is captured.
func (a *Agent) Status() []PodStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]PodStatus, 0, len(a.pods))
	for _, uid := range sortedKeys(a.pods) {
		e := a.pods[uid]
		out = append(out, PodStatus{UID: uid, Namespace: e.spec.Namespace, Name: e.spec.Name, NetnsCookie: e.ns.Cookie, Enrolled: e.enrolled, Err: e.err})
	}
	return out
}

// Enrolled reports whether pod uid is captured.
func (a *Agent) Enrolled(uid string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.pods[uid]
	return e != nil && e.enrolled
}

// Close closes the agent's namespace handles. Capture stays (it is
// pinned); use the Dataplane to remove it.
func (a *Agent) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.pods {
		e.ns.Close()
	}
	a.pods = map[string]*podEntry{}
	return nil
}
