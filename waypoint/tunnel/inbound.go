package tunnel

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/waypoint"
	"github.com/warren-mesh/warren/ztunnel/hbone"
)

// What the waypoint serves (the Gateway's warren.io/waypoint-for).
const (
	ForService  = "service"
	ForWorkload = "workload"
	ForAll      = "all"
	ForNone     = "none"
)

// Outcomes of a CONNECT, the result label of
// warren_waypoint_hbone_streams_total.
const (
	ResultAccepted           = "accepted"
	ResultNotReady           = "not_ready"           // 503: no configuration or identity yet, or draining
	ResultUnknownDestination = "unknown_destination" // 404: no Service frontend or pod has the address
	ResultNotServed          = "not_served"          // 404: another waypoint's, or traffic of a kind this one does not serve
	ResultPortNotServed      = "port_not_served"     // 404: the Service has no such port
)

// InboundOptions configure an Inbound.
type InboundOptions struct {
	// Engine serves the accepted streams; Store resolves destinations.
	// Both required (the Engine's own Store).
	Engine *waypoint.Engine
	Store  *waypoint.Store
	// Gateway is this waypoint, "<namespace>/<name>"; only destinations
	// the configuration assigns to it are served. Required.
	Gateway string
	// For is what traffic the waypoint serves: ForService (default),
	// ForWorkload, ForAll or ForNone.
	For string
	// Ready, if set, is asked before each CONNECT: an error answers 503
	// (configuration or identity not there yet, or draining).
	Ready func() error
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Inbound is the hbone.Handler of the waypoint's HBONE listener.
type Inbound struct {
	opts                InboundOptions
	services, workloads bool

	streams                       *prometheus.CounterVec
	accepted, notReady, unknown   prometheus.Counter
	notServed, portNotServed      prometheus.Counter
	active                        prometheus.GaugeFunc
	forwardedUntrusted            prometheus.Counter
	nActive                       atomic.Int64
	nAccepted, nRefused, nUntrust atomic.Uint64
	lastRefused                   atomic.Pointer[string]
}

var _ hbone.Handler = (*Inbound)(nil)

// NewInbound checks o and registers the metrics.
func NewInbound(o InboundOptions) (*Inbound, error) {
	if o.Engine == nil || o.Store == nil || o.Gateway == "" {
		return nil, errors.New("waypoint: tunnel: inbound needs an Engine, its Store and the Gateway")
	}
	in := &Inbound{opts: o}
	switch o.For {
	case "", ForService:
		in.services = true
	case ForWorkload:
		in.workloads = true
	case ForAll:
		in.services, in.workloads = true, true
	case ForNone:
	default:
		return nil, fmt.Errorf("waypoint: tunnel: waypoint-for %q: want service, workload, all or none", o.For)
	}
	in.streams = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warren_waypoint_hbone_streams_total",
		Help: "HBONE CONNECT requests received, by result (accepted, not_ready, unknown_destination, not_served, port_not_served)."},
		[]string{"result"})
	in.active = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warren_waypoint_hbone_active_streams",
		Help: "Accepted HBONE streams being served."}, func() float64 { return float64(in.nActive.Load()) })
	in.accepted = in.streams.WithLabelValues(ResultAccepted)
	in.notReady = in.streams.WithLabelValues(ResultNotReady)
	in.unknown = in.streams.WithLabelValues(ResultUnknownDestination)
	in.notServed = in.streams.WithLabelValues(ResultNotServed)
	in.portNotServed = in.streams.WithLabelValues(ResultPortNotServed)
	in.forwardedUntrusted = prometheus.NewCounter(prometheus.CounterOpts{Name: "warren_waypoint_forwarded_untrusted_total",
		Help: "CONNECTs whose Forwarded address is not a workload of the peer's identity (the connection's address was used instead)."})
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{in.streams, in.active, in.forwardedUntrusted} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("waypoint: tunnel: metrics: %w", err)
			}
		}
	}
	return in, nil
}

// ServeHBONE implements hbone.Handler.
func (in *Inbound) ServeHBONE(r *hbone.Request) {
	if in.opts.Ready != nil {
		if err := in.opts.Ready(); err != nil {
			in.refuse(r, http.StatusServiceUnavailable, in.notReady, ResultNotReady)
			return
		}
	}
	t := in.opts.Store.Resolve(r.Authority)
	switch {
	case t.Kind == waypoint.TargetUnknown:
		in.refuse(r, http.StatusNotFound, in.unknown, ResultUnknownDestination)
		return
	case t.Waypoint != in.opts.Gateway,
		t.Kind == waypoint.TargetService && !in.services,
		t.Kind == waypoint.TargetWorkload && !in.workloads:
		in.refuse(r, http.StatusNotFound, in.notServed, ResultNotServed)
		return
	case !t.PortServed:
		in.refuse(r, http.StatusNotFound, in.portNotServed, ResultPortNotServed)
		return
	}
	m := t.Meta()
	m.SourceIdentity = r.Peer.String()
	if ns, _, err := certs.ParseWorkloadID(r.Peer); err == nil {
		m.SourceNamespace = ns
	}
	m.SourceAddr = in.sourceAddr(r)
	m.Traceparent = r.Header.Get("Traceparent")
	m.Baggage = r.Header.Get("Baggage")
	in.nActive.Add(1)
	defer in.nActive.Add(-1)
	s, err := r.Accept()
	if err != nil {
		return // the client gave up on it
	}
	in.accepted.Inc()
	in.nAccepted.Add(1)
	in.opts.Engine.ServeConn(s, m)
}

// refuse counts, then answers (so whoever sees the answer sees the count).
func (in *Inbound) refuse(r *hbone.Request, code int, c prometheus.Counter, result string) {
	c.Inc()
	in.nRefused.Add(1)
	in.lastRefused.Store(&result)
	_ = r.Reject(code)
}

// sourceAddr is the client's address: the HBONE connection's, or the
// Forwarded one when the configuration has a workload there running as
// the peer's identity (a Forwarded header is the client's word; the
// address it names must be one the peer could be).
func (in *Inbound) sourceAddr(r *hbone.Request) string {
	remote := addrPortOf(r.RemoteAddr)
	src := remote.Addr()
	if fwd, ok := r.ForwardedFor(); ok && fwd.Unmap() != src.Unmap() {
		if w := in.opts.Store.WorkloadAt(fwd); w != nil && w.GetIdentity() == r.Peer.String() {
			src = fwd
		} else {
			in.forwardedUntrusted.Inc()
			in.nUntrust.Add(1)
		}
	}
	return netip.AddrPortFrom(src.Unmap(), remote.Port()).String()
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// InboundStats is a snapshot for admin endpoints.
type InboundStats struct {
	Active             int64  `json:"active"`
	Accepted           uint64 `json:"accepted"`
	Refused            uint64 `json:"refused"`
	LastRefusal        string `json:"lastRefusal,omitempty"`
	ForwardedUntrusted uint64 `json:"forwardedUntrusted"`
}

// Stats reports the streams served and refused.
func (in *Inbound) Stats() InboundStats {
	st := InboundStats{Active: in.nActive.Load(), Accepted: in.nAccepted.Load(), Refused: in.nRefused.Load(),
		ForwardedUntrusted: in.nUntrust.Load()}
	if p := in.lastRefused.Load(); p != nil {
		st.LastRefusal = *p
	}
	return st
}
