package waypoint

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/waypoint/filters"
	"github.com/warren-mesh/warren/waypoint/lb"
	"github.com/warren-mesh/warren/waypoint/retry"
	"github.com/warren-mesh/warren/waypoint/router"
	"github.com/warren-mesh/warren/waypoint/upstream"
)

// Config is everything the waypoint needs from the control plane, keyed
// by resource name as xDS sends it: L7Services and Services by
// "<ns>/<hostname>", Workloads by "<ns>/<pod>", Authorizations by
// "<ns>/<name>".
type Config struct {
	L7Services     map[string]*warrenv1.L7Service
	Services       map[string]*warrenv1.Service
	Workloads      map[string]*warrenv1.Workload
	Authorizations map[string]*warrenv1.Authorization
}

// Validate checks that keys match the resources they hold and that
// every route table compiles.
func (c Config) Validate() error {
	_, err := compile(c, lb.NewRegistry(lb.Outlier{}), newBudgets(nil), nil)
	return err
}

// Clone returns a Config with copied maps (resources are shared; they are
// immutable once stored).
func (c Config) Clone() Config {
	return Config{L7Services: cloneMap(c.L7Services), Services: cloneMap(c.Services),
		Workloads: cloneMap(c.Workloads), Authorizations: cloneMap(c.Authorizations)}
}

func cloneMap[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// StoreOptions tune a Store.
type StoreOptions struct {
	// Outlier configures connect-failure ejection of endpoints.
	Outlier lb.Outlier
	// Now is the clock for retry budgets; default time.Now.
	Now func() time.Time
}

// Store holds the current configuration as an immutable compiled
// snapshot, replaced atomically (copy-on-write): requests in flight keep
// the snapshot they started with. Endpoint state (outlier ejection,
// active requests) and retry budgets survive replacements.
type Store struct {
	mu      sync.Mutex // serializes Replace
	cur     atomic.Pointer[snapshot]
	reg     *lb.Registry
	budgets *budgets
	version atomic.Uint64
}

// NewStore returns a Store holding an empty Config.
func NewStore(o StoreOptions) *Store {
	s := &Store{reg: lb.NewRegistry(o.Outlier), budgets: newBudgets(o.Now)}
	snap, err := compile(Config{}, s.reg, s.budgets, nil)
	if err != nil {
		panic(err) // an empty config always compiles
	}
	s.cur.Store(snap)
	return s
}

// Replace compiles c and makes it current. On error the previous
// configuration stays in force (what an xDS NACK needs). The Store keeps
// c's maps: the caller must not modify them afterwards (Clone first).
func (s *Store) Replace(c Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := map[upstream.Endpoint]bool{}
	snap, err := compile(c, s.reg, s.budgets, keep)
	if err != nil {
		return err
	}
	snap.version = s.version.Add(1)
	s.cur.Store(snap)
	s.reg.Retain(keep)
	s.budgets.retain(c.Services)
	return nil
}

// Update applies fn to a copy of the current Config and replaces it
// (for xDS deltas).
func (s *Store) Update(fn func(*Config)) error {
	c := s.Config().Clone()
	fn(&c)
	return s.Replace(c)
}

// Config returns the current configuration (do not modify).
func (s *Store) Config() Config { return s.cur.Load().cfg }

// Version counts successful replacements.
func (s *Store) Version() uint64 { return s.cur.Load().version }

func (s *Store) load() *snapshot { return s.cur.Load() }

// budgets keeps one retry budget per backend Service across snapshots.
type budgets struct {
	mu  sync.Mutex
	m   map[string]*retry.Budget
	now func() time.Time
}

func newBudgets(now func() time.Time) *budgets {
	return &budgets{m: map[string]*retry.Budget{}, now: now}
}

func (b *budgets) get(key string, cfg *warrenv1.RetryBudget) *retry.Budget {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cfg == nil {
		delete(b.m, key)
		return nil
	}
	if cur := b.m[key]; cur != nil && proto.Equal(cur.Config(), cfg) {
		return cur
	}
	nb := retry.NewBudget(cfg, b.now)
	b.m[key] = nb
	return nb
}

func (b *budgets) retain(services map[string]*warrenv1.Service) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.m {
		if _, ok := services[k]; !ok {
			delete(b.m, k)
		}
	}
}

// snapshot is one compiled Config.
type snapshot struct {
	cfg     Config
	version uint64
	// services by key: everything a request to that Service needs.
	services map[string]*serviceState
	// backends by "key|port", shared by routes.
	backends map[string]*backendState
	// workloadByIP names the workload behind a source address (metrics).
	workloadByIP map[string]*warrenv1.Workload
	// vips are the frontend addresses of the Services this waypoint has
	// route tables for (L7Services), workloadKeys the Workload key
	// behind each pod address: what an HBONE authority can address.
	vips         map[netip.Addr]*serviceState
	workloadKeys map[netip.Addr]string
	// wdests caches destination state for workload-addressed traffic,
	// by (workload, port); nWdests bounds it.
	wdests  sync.Map
	nWdests atomic.Int32
}

// serviceState is one destination Service frontend.
type serviceState struct {
	key      string
	name     string // short name for metrics (hostname)
	ns       string
	waypoint string // "<ns>/<gateway>" serving it (L7Service.waypoint)
	l7       *router.Service
	policies []*warrenv1.Authorization
	// defaults are the implicit routes (Service → own endpoints) per port.
	defaults map[uint32]*routeState
}

// routeState is what a matched route carries (router.Route.Data).
type routeState struct {
	ref            string
	filters        *filters.Set
	backends       []*backendState
	weights        []uint32
	mirrors        []mirrorState
	retry          *retry.Policy
	requestTimeout time.Duration
	backendTimeout time.Duration
	session        *warrenv1.SessionPersistence
	matchedPrefix  string
	// replay: the request body must be kept for retries or mirrors.
	replay bool
}

type mirrorState struct {
	backend  *backendState
	num, den uint32
}

// backendState is one backendRef: a Service port and its endpoints.
type backendState struct {
	key     string
	port    uint32
	invalid string
	// filters are the backendRef's own filters and mirrors (per route;
	// the rest is shared through backendBase).
	filters *filters.Set
	mirrors []mirrorState
	*backendBase
}

type backendBase struct {
	set     *lb.Set
	proto   upstream.Protocol
	budget  *retry.Budget
	session *warrenv1.SessionPersistence
	host    string // Service hostname (Host for mirrors and metrics)
}

func compile(c Config, reg *lb.Registry, bud *budgets, keep map[upstream.Endpoint]bool) (*snapshot, error) {
	snap := &snapshot{cfg: c, services: map[string]*serviceState{}, backends: map[string]*backendState{},
		workloadByIP: map[string]*warrenv1.Workload{}, vips: map[netip.Addr]*serviceState{}, workloadKeys: map[netip.Addr]string{}}
	var errs []error
	// Workloads by the Services they back, and by address.
	bySvc := map[string][]*warrenv1.Workload{}
	wkeys := sortedKeys(c.Workloads)
	for _, k := range wkeys {
		w := c.Workloads[k]
		if w == nil {
			errs = append(errs, fmt.Errorf("waypoint: config: workload %q is nil", k))
			continue
		}
		for sk := range w.GetServices() {
			bySvc[sk] = append(bySvc[sk], w)
		}
		for _, a := range w.GetAddresses() {
			snap.workloadByIP[a] = w
			ip, err := netip.ParseAddr(a)
			if err != nil {
				errs = append(errs, fmt.Errorf("waypoint: config: workload %q: address %q: %v", k, a, err))
				continue
			}
			snap.workloadKeys[ip.Unmap()] = k
		}
	}
	base := map[string]*backendBase{}
	backend := func(key string, port uint32) *backendBase {
		bk := key + "|" + fmt.Sprint(port)
		if b := base[bk]; b != nil {
			return b
		}
		b := &backendBase{set: lb.Endpoints(reg, key, port, bySvc[key], keep)}
		svc := c.Services[key]
		b.host = hostOf(key)
		for _, sp := range svc.GetPorts() {
			if sp.GetPort() == port {
				b.proto = protocolFor(sp.GetAppProtocol(), sp.GetName())
			}
		}
		tp := svc.GetTrafficPolicy()
		b.budget = bud.get(key, tp.GetRetryBudget())
		b.session = tp.GetSessionPersistence()
		base[bk] = b
		return b
	}
	var mkBackend func(b *warrenv1.Backend) *backendState
	mirrorsOf := func(fs *filters.Set) []mirrorState {
		if fs == nil {
			return nil
		}
		var out []mirrorState
		for _, m := range fs.Mirrors {
			out = append(out, mirrorState{backend: mkBackend(m.GetBackend()), num: m.GetNumerator(), den: m.GetDenominator()})
		}
		return out
	}
	mkBackend = func(b *warrenv1.Backend) *backendState {
		bs := &backendState{key: b.GetService(), port: b.GetPort(), invalid: b.GetInvalid(), filters: filters.Compile(b.GetFilters())}
		if bs.invalid == "" && bs.key == "" {
			bs.invalid = "backend names no Service"
		}
		bs.backendBase = backend(bs.key, bs.port)
		bs.mirrors = mirrorsOf(bs.filters)
		return bs
	}
	mkRoute := func(r *warrenv1.Route, matchedPrefix string) *routeState {
		rs := &routeState{ref: router.RefString(r.GetSource()), filters: filters.Compile(r.GetFilters()),
			retry: retry.FromProto(r.GetRetry()), session: r.GetSessionPersistence(), matchedPrefix: matchedPrefix,
			requestTimeout: time.Duration(r.GetTimeouts().GetRequestMs()) * time.Millisecond,
			backendTimeout: time.Duration(r.GetTimeouts().GetBackendRequestMs()) * time.Millisecond}
		for _, b := range r.GetBackends() {
			rs.backends = append(rs.backends, mkBackend(b))
			rs.weights = append(rs.weights, b.GetWeight())
		}
		rs.mirrors = mirrorsOf(rs.filters)
		if rs.session == nil {
			for _, b := range rs.backends {
				if b.session != nil {
					rs.session = b.session
					break
				}
			}
		}
		rs.replay = rs.retry != nil || len(rs.mirrors) > 0
		for _, b := range rs.backends {
			rs.replay = rs.replay || len(b.mirrors) > 0
		}
		return rs
	}
	attach := func(t *router.Table) {
		if t == nil {
			return
		}
		for _, r := range t.Routes {
			r.Data = mkRoute(r.Proto, r.MatchedPrefix())
		}
	}
	for _, k := range sortedKeys(c.Services) {
		svc := c.Services[k]
		if svc == nil {
			errs = append(errs, fmt.Errorf("waypoint: config: service %q is nil", k))
			continue
		}
		if want := svc.GetNamespace() + "/" + svc.GetHostname(); want != k {
			errs = append(errs, fmt.Errorf("waypoint: config: service key %q does not match the resource (%s)", k, want))
			continue
		}
		ss := &serviceState{key: k, name: svc.GetHostname(), ns: svc.GetNamespace(), defaults: map[uint32]*routeState{}}
		for _, p := range svc.GetPorts() {
			ss.defaults[p.GetPort()] = mkRoute(&warrenv1.Route{Backends: []*warrenv1.Backend{{Service: k, Port: p.GetPort(), Weight: 1}}}, "")
		}
		snap.services[k] = ss
	}
	for _, k := range sortedKeys(c.L7Services) {
		l7 := c.L7Services[k]
		if l7 == nil {
			errs = append(errs, fmt.Errorf("waypoint: config: l7 service %q is nil", k))
			continue
		}
		if want := l7.GetNamespace() + "/" + l7.GetHostname(); want != k {
			errs = append(errs, fmt.Errorf("waypoint: config: l7 service key %q does not match the resource (%s)", k, want))
			continue
		}
		rs, err := router.CompileService(l7)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, p := range rs.Ports {
			attach(p.Producer)
			for _, t := range p.Consumers {
				attach(t)
			}
		}
		ss := snap.services[k]
		if ss == nil {
			ss = &serviceState{key: k, name: l7.GetHostname(), ns: l7.GetNamespace(), defaults: map[uint32]*routeState{}}
			snap.services[k] = ss
		}
		ss.l7 = rs
		ss.waypoint = l7.GetWaypoint()
		for _, a := range l7.GetAddresses() {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				errs = append(errs, fmt.Errorf("waypoint: config: l7 service %q: address %q: %v", k, a, err))
				continue
			}
			// Keys are visited in order: a VIP claimed twice (never
			// produced by the translator) goes to the first key.
			if _, dup := snap.vips[ip.Unmap()]; !dup {
				snap.vips[ip.Unmap()] = ss
			}
		}
		for _, p := range l7.GetPorts() {
			if ss.defaults[p.GetPort()] == nil {
				ss.defaults[p.GetPort()] = mkRoute(&warrenv1.Route{Backends: []*warrenv1.Backend{{Service: k, Port: p.GetPort(), Weight: 1}}}, "")
			}
		}
		for _, name := range l7.GetAuthorizationPolicies() {
			a, ok := c.Authorizations[name]
			if !ok {
				// A policy named but not (yet) received: fail closed with a
				// policy that matches nothing, so ALLOW semantics deny.
				a = &warrenv1.Authorization{Name: name, Action: warrenv1.Authorization_ALLOW}
			}
			ss.policies = append(ss.policies, a)
		}
	}
	for k, a := range c.Authorizations {
		if a == nil {
			errs = append(errs, fmt.Errorf("waypoint: config: authorization %q is nil", k))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return snap, nil
}

// defaultRoute returns the implicit route for a port of ss (creating a
// default for a port not listed).
func (ss *serviceState) defaultRoute(port uint32) *routeState {
	return ss.defaults[port]
}

func protocolFor(appProtocol, portName string) upstream.Protocol {
	p := strings.ToLower(appProtocol)
	if p == "" {
		p = strings.ToLower(portName)
		if i := strings.IndexByte(p, '-'); i > 0 {
			p = p[:i]
		}
	}
	switch p {
	case "http2", "grpc", "h2c", "kubernetes.io/h2c":
		return upstream.H2C
	}
	return upstream.HTTP1
}

// hostOf returns the hostname part of a "<ns>/<hostname>" key.
func hostOf(key string) string {
	if i := strings.IndexByte(key, '/'); i >= 0 {
		return key[i+1:]
	}
	return key
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// sourceWorkload names the workload at a source address ("unknown").
func (s *snapshot) sourceWorkload(addr string) (name, ns string) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if w := s.workloadByIP[host]; w != nil {
		n := w.GetWorkloadName()
		if n == "" {
			n = w.GetName()
		}
		return n, w.GetNamespace()
	}
	return "unknown", "unknown"
}
