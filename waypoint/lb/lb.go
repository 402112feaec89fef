package lb

import (
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/waypoint/upstream"
)

// Endpoint is an upstream endpoint with the load-balancing state shared
// by every request to it.
type Endpoint struct {
	upstream.Endpoint
	// WorkloadName is the canonical workload (for metrics); Zone and Node
	// are the endpoint's locality.
	WorkloadName, Namespace, Zone, Node string

	active       atomic.Int64
	fails        atomic.Int32
	ejections    atomic.Int32
	ejectedUntil atomic.Int64
	outlier      *Outlier
}

// Active is the number of requests in flight to the endpoint.
func (e *Endpoint) Active() int64 { return e.active.Load() }

// Start counts a request to e; call the returned func when it ends.
func (e *Endpoint) Start() (done func()) {
	e.active.Add(1)
	return func() { e.active.Add(-1) }
}

// Ejected reports whether e is ejected at now.
func (e *Endpoint) Ejected(now time.Time) bool { return e.ejectedUntil.Load() > now.UnixNano() }

// ReportConnect records the outcome of a connection attempt: after
// Outlier.ConsecutiveFailures failed connects in a row the endpoint is
// ejected for BaseEjection times the number of its ejections (capped at
// MaxEjection). It returns true when this report ejected the endpoint.
func (e *Endpoint) ReportConnect(ok bool, now time.Time) bool {
	if ok {
		e.fails.Store(0)
		return false
	}
	o := e.outlier
	if o == nil || o.ConsecutiveFailures <= 0 {
		return false
	}
	if int(e.fails.Add(1)) < o.ConsecutiveFailures {
		return false
	}
	e.fails.Store(0)
	n := e.ejections.Add(1)
	d := time.Duration(n) * o.BaseEjection
	if d > o.MaxEjection {
		d = o.MaxEjection
	}
	e.ejectedUntil.Store(now.Add(d).UnixNano())
	return true
}

// Outlier configures connect-failure ejection.
type Outlier struct {
	// ConsecutiveFailures ejects an endpoint after this many failed
	// connects in a row; default 5, negative disables.
	ConsecutiveFailures int
	// BaseEjection is the first ejection's length; default 30s.
	BaseEjection time.Duration
	// MaxEjection caps an ejection; default 5m.
	MaxEjection time.Duration
}

func (o *Outlier) defaults() {
	if o.ConsecutiveFailures == 0 {
		o.ConsecutiveFailures = 5
	}
	if o.BaseEjection == 0 {
		o.BaseEjection = 30 * time.Second
	}
	if o.MaxEjection == 0 {
		o.MaxEjection = 5 * time.Minute
	}
}

// Registry holds endpoint state across configuration snapshots.
type Registry struct {
	mu      sync.Mutex
	m       map[upstream.Endpoint]*Endpoint
	outlier *Outlier
}

// NewRegistry returns an empty registry using outlier settings o.
func NewRegistry(o Outlier) *Registry {
	o.defaults()
	return &Registry{m: map[upstream.Endpoint]*Endpoint{}, outlier: &o}
}

// Get returns the state for ep, creating it.
func (r *Registry) Get(ep upstream.Endpoint) *Endpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.m[ep]
	if e == nil {
		e = &Endpoint{Endpoint: ep, outlier: r.outlier}
		r.m[ep] = e
	}
	return e
}

// Retain drops the state of endpoints not in keep.
func (r *Registry) Retain(keep map[upstream.Endpoint]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k := range r.m {
		if !keep[k] {
			delete(r.m, k)
		}
	}
}

// Set is the endpoints of one Service port.
type Set struct {
	Endpoints []*Endpoint
}

// Endpoints lists the ready endpoints of Service svcKey
// ("<ns>/<hostname>") port svcPort among workloads, with the target port
// of each workload's port mapping, sorted by address. Each comes from reg
// (its state survives snapshots) and is recorded in keep when non-nil.
func Endpoints(reg *Registry, svcKey string, svcPort uint32, workloads []*warrenv1.Workload, keep map[upstream.Endpoint]bool) *Set {
	s := &Set{}
	for _, w := range workloads {
		if !w.GetReady() {
			continue
		}
		pl, ok := w.GetServices()[svcKey]
		if !ok {
			continue
		}
		target := uint32(0)
		for _, pm := range pl.GetPorts() {
			if pm.GetServicePort() == svcPort {
				target = pm.GetTargetPort()
				break
			}
		}
		if target == 0 {
			continue
		}
		for _, a := range w.GetAddresses() {
			ep := upstream.Endpoint{
				Addr:     net.JoinHostPort(a, strconv.FormatUint(uint64(target), 10)),
				Workload: w.GetUid(),
				Identity: w.GetIdentity(),
				HBONE:    w.GetTunnel() == warrenv1.TunnelProtocol_TUNNEL_HBONE,
			}
			e := reg.Get(ep)
			e.WorkloadName, e.Namespace, e.Zone, e.Node = w.GetWorkloadName(), w.GetNamespace(), w.GetZone(), w.GetNode()
			if keep != nil {
				keep[ep] = true
			}
			s.Endpoints = append(s.Endpoints, e)
			break // one address per workload (the first family)
		}
	}
	sort.Slice(s.Endpoints, func(i, j int) bool { return s.Endpoints[i].Addr < s.Endpoints[j].Addr })
	return s
}

// Find returns the endpoint with address addr, or nil.
func (s *Set) Find(addr string) *Endpoint {
	if s == nil {
		return nil
	}
	for _, e := range s.Endpoints {
		if e.Addr == addr {
			return e
		}
	}
	return nil
}

// Pick chooses an endpoint by power of two choices on active requests,
// among those not ejected and not in avoid (previous attempts); when
// that leaves none it relaxes avoid, then ejection (panic mode: better a
// suspect endpoint than none). nil when the set is empty.
func (s *Set) Pick(now time.Time, avoid []*Endpoint) *Endpoint {
	if s == nil || len(s.Endpoints) == 0 {
		return nil
	}
	if e := s.pick(now, avoid, true); e != nil {
		return e
	}
	if e := s.pick(now, nil, true); e != nil {
		return e
	}
	return s.pick(now, nil, false)
}

func (s *Set) eligible(e *Endpoint, now time.Time, avoid []*Endpoint, skipEjected bool) bool {
	if skipEjected && e.Ejected(now) {
		return false
	}
	for _, a := range avoid {
		if a == e {
			return false
		}
	}
	return true
}

func (s *Set) pick(now time.Time, avoid []*Endpoint, skipEjected bool) *Endpoint {
	eps := s.Endpoints
	n := len(eps)
	if n == 1 {
		if s.eligible(eps[0], now, avoid, skipEjected) {
			return eps[0]
		}
		return nil
	}
	// Two random distinct candidates first (the common case), then a scan.
	i, j := rand.IntN(n), rand.IntN(n-1)
	if j >= i {
		j++
	}
	a, b := eps[i], eps[j]
	okA, okB := s.eligible(a, now, avoid, skipEjected), s.eligible(b, now, avoid, skipEjected)
	switch {
	case okA && okB:
		if b.active.Load() < a.active.Load() {
			return b
		}
		return a
	case okA:
		return a
	case okB:
		return b
	}
	var best *Endpoint
	off := rand.IntN(n)
	for k := range n {
		e := eps[(k+off)%n]
		if s.eligible(e, now, avoid, skipEjected) && (best == nil || e.active.Load() < best.active.Load()) {
			best = e
		}
	}
	return best
}

// PickWeighted returns an index into weights chosen with probability
// proportional to its weight, or -1 when every weight is 0.
func PickWeighted(weights []uint32) int {
	var total uint64
	for _, w := range weights {
		total += uint64(w)
	}
	if total == 0 {
		return -1
	}
	if len(weights) == 1 {
		return 0
	}
	x := rand.Uint64N(total)
	for i, w := range weights {
		if x < uint64(w) {
			return i
		}
		x -= uint64(w)
	}
	return len(weights) - 1
}
