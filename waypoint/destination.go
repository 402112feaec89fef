package waypoint

import (
	"net"
	"net/netip"
	"sort"
	"strconv"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/waypoint/lb"
	"github.com/warren-mesh/warren/waypoint/listener"
	"github.com/warren-mesh/warren/waypoint/upstream"
)

// TargetKind says what a tunnel's destination address names.
type TargetKind uint8

const (
	// TargetUnknown: no Service frontend or pod of the configuration has
	// the address.
	TargetUnknown TargetKind = iota
	// TargetService: a frontend address (VIP) of a Service this waypoint
	// holds route tables for (an L7Service).
	TargetService
	// TargetWorkload: the address of a pod (a Workload).
	TargetWorkload
)

func (k TargetKind) String() string {
	switch k {
	case TargetService:
		return "service"
	case TargetWorkload:
		return "workload"
	}
	return "unknown"
}

// Target is what a destination address (an HBONE :authority) resolves to
// in the current configuration.
type Target struct {
	Kind TargetKind
	// Key is the Service key ("<ns>/<hostname>") or the Workload key
	// ("<ns>/<pod>").
	Key string
	// Port is the destination port; PortServed says whether the Service
	// declares it (always true for workloads: any pod port may be
	// addressed).
	Port       uint32
	PortServed bool
	// Protocol is the Service port's declared protocol
	// (PROTOCOL_UNSPECIFIED for workloads: the listener sniffs).
	Protocol warrenv1.Protocol
	// Waypoint is the waypoint Gateway ("<ns>/<name>") the configuration
	// says serves this destination: the L7Service's waypoint, or the
	// Workload's waypoint for workload traffic ("" when it has none).
	Waypoint string
}

// Meta returns the listener.Meta addressing t (source fields left empty).
func (t Target) Meta() listener.Meta {
	m := listener.Meta{Port: t.Port, Protocol: t.Protocol}
	if t.Kind == TargetWorkload {
		m.Workload = t.Key
	} else {
		m.Service = t.Key
	}
	return m
}

// Resolve looks dst up in the current configuration: a Service frontend
// address this waypoint has an L7Service for first, then a pod address.
func (s *Store) Resolve(dst netip.AddrPort) Target {
	snap := s.load()
	ip := dst.Addr().Unmap()
	port := uint32(dst.Port())
	if ss := snap.vips[ip]; ss != nil {
		return Target{Kind: TargetService, Key: ss.key, Port: port, PortServed: ss.l7.Ports[port] != nil,
			Protocol: ss.l7.Protocol(port), Waypoint: ss.waypoint}
	}
	if k, ok := snap.workloadKeys[ip]; ok {
		return Target{Kind: TargetWorkload, Key: k, Port: port, PortServed: true,
			Waypoint: snap.cfg.Workloads[k].GetWaypoint().GetGateway()}
	}
	return Target{Port: port}
}

// WorkloadAt returns the Workload with address ip, or nil.
func (s *Store) WorkloadAt(ip netip.Addr) *warrenv1.Workload {
	snap := s.load()
	k, ok := snap.workloadKeys[ip.Unmap()]
	if !ok {
		return nil
	}
	return snap.cfg.Workloads[k]
}

// destination returns the state of the connection's destination: the
// Service, or for workload-addressed traffic the workload's own.
func (s *snapshot) destination(m *listener.Meta) *serviceState {
	if m.Workload != "" {
		return s.workloadDest(m.Workload, m.Port)
	}
	return s.services[m.Service]
}

// maxWorkloadDests bounds the cached workload destinations of one
// snapshot (a client can address any port of any pod); beyond it they
// are built per connection.
const maxWorkloadDests = 4096

type wdestKey struct {
	key  string
	port uint32
}

// workloadDest is the destination state of traffic addressed to a pod
// (waypoint-for workload|all): the pod's policies (workloadPolicies), no
// route table, and one default route to the pod itself at the addressed
// port. Its endpoint keeps no outlier state: with a single endpoint there
// is nothing to eject it in favour of.
func (s *snapshot) workloadDest(key string, port uint32) *serviceState {
	k := wdestKey{key, port}
	if v, ok := s.wdests.Load(k); ok {
		return v.(*serviceState)
	}
	w := s.cfg.Workloads[key]
	if w == nil || len(w.GetAddresses()) == 0 || port == 0 || port > 65535 {
		return nil
	}
	name := w.GetWorkloadName()
	if name == "" {
		name = w.GetName()
	}
	ep := &lb.Endpoint{
		Endpoint: upstream.Endpoint{
			Addr:     net.JoinHostPort(w.GetAddresses()[0], strconv.FormatUint(uint64(port), 10)),
			Workload: w.GetUid(),
			Identity: w.GetIdentity(),
			HBONE:    w.GetTunnel() == warrenv1.TunnelProtocol_TUNNEL_HBONE,
		},
		WorkloadName: name, Namespace: w.GetNamespace(), Zone: w.GetZone(), Node: w.GetNode(),
	}
	b := &backendState{key: key, port: port, backendBase: &backendBase{set: &lb.Set{Endpoints: []*lb.Endpoint{ep}},
		proto: upstream.HTTP1, host: w.GetName()}}
	// Not Service traffic: destination_service is "unknown" (as in Istio);
	// destination_workload names the pod's workload.
	ss := &serviceState{key: key, name: "unknown", ns: w.GetNamespace(), waypoint: w.GetWaypoint().GetGateway(),
		defaults: map[uint32]*routeState{port: {ref: "workload", backends: []*backendState{b}, weights: []uint32{1}}}}
	for _, pn := range workloadPolicies(s, w) {
		a, ok := s.cfg.Authorizations[pn]
		if !ok {
			// Named but not (yet) received: fail closed, as for Services.
			a = &warrenv1.Authorization{Name: pn, Action: warrenv1.Authorization_ALLOW}
		}
		ss.policies = append(ss.policies, a)
	}
	if s.nWdests.Load() >= maxWorkloadDests {
		return ss
	}
	if v, loaded := s.wdests.LoadOrStore(k, ss); loaded {
		return v.(*serviceState)
	}
	s.nWdests.Add(1)
	return ss
}

// workloadPolicies are the AuthorizationPolicies enforced on traffic
// addressed to pod w: those the Workload lists (its namespace's, and its
// Services' when they have no waypoint) and those of the L7Services of
// the Services it backs that the same waypoint serves (policies targeting
// those Services, and the waypoint Gateway's). Addressing the pod
// directly through the waypoint must not escape what guards it behind its
// Service: the pod's ztunnel sees the waypoint, not the client, as the
// caller. Sorted, without duplicates.
func workloadPolicies(s *snapshot, w *warrenv1.Workload) []string {
	seen := map[string]bool{}
	var out []string
	add := func(names []string) {
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	add(w.GetAuthorizationPolicies())
	for svc := range w.GetServices() {
		if l7 := s.cfg.L7Services[svc]; l7 != nil && l7.GetWaypoint() == w.GetWaypoint().GetGateway() {
			add(l7.GetAuthorizationPolicies())
		}
	}
	sort.Strings(out)
	return out
}
