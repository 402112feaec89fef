package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The proxy's own metrics (the engine's request metrics and the inbound
// stream counters are registered by their packages):
//
//	warren_waypoint_ready                                  1 when Ready
//	warren_waypoint_xds_connected                          1 while the xDS stream is up (xDS mode)
//	warren_waypoint_config_updates_total{type,result}      updates applied / rejected (NACKed) per type
//	warren_waypoint_config_resources{type}                 resources held per type
//	warren_waypoint_config_last_update_timestamp_seconds{type}
//	warren_waypoint_cert_expiry_timestamp_seconds          NotAfter of the waypoint's own certificate
//	warren_waypoint_cert_rotations_total                   certificates installed
//	warren_waypoint_cert_fetch_failures                    consecutive failed fetches
//	warren_waypoint_trust_bundle_roots                     roots trusted
//	warren_waypoint_trust_bundle_expiry_timestamp_seconds  earliest NotAfter among them
//	warren_waypoint_hbone_connections{direction}           HBONE connections (inbound: clients; outbound: the pool)
//	warren_waypoint_hbone_streams{direction}               open HBONE streams
var (
	descReady       = prometheus.NewDesc("warren_waypoint_ready", "1 when the waypoint is ready (identity, trust roots, configuration; not draining).", nil, nil)
	descXDS         = prometheus.NewDesc("warren_waypoint_xds_connected", "1 while the xDS stream to istiod-lite is up.", nil, nil)
	descUpdates     = prometheus.NewDesc("warren_waypoint_config_updates_total", "Configuration updates by type and result (applied, rejected = NACKed).", []string{"type", "result"}, nil)
	descResources   = prometheus.NewDesc("warren_waypoint_config_resources", "Resources held by type.", []string{"type"}, nil)
	descLastUpdate  = prometheus.NewDesc("warren_waypoint_config_last_update_timestamp_seconds", "When an update of the type was last applied.", []string{"type"}, nil)
	descCertExpiry  = prometheus.NewDesc("warren_waypoint_cert_expiry_timestamp_seconds", "NotAfter of the waypoint's own certificate (Unix seconds).", nil, nil)
	descCertRot     = prometheus.NewDesc("warren_waypoint_cert_rotations_total", "Certificates installed for the waypoint's identity.", nil, nil)
	descCertFail    = prometheus.NewDesc("warren_waypoint_cert_fetch_failures", "Consecutive failed certificate fetches.", nil, nil)
	descRoots       = prometheus.NewDesc("warren_waypoint_trust_bundle_roots", "Roots in the trust bundle.", nil, nil)
	descRootsExpiry = prometheus.NewDesc("warren_waypoint_trust_bundle_expiry_timestamp_seconds", "Earliest NotAfter among the trusted roots (Unix seconds).", nil, nil)
	descConns       = prometheus.NewDesc("warren_waypoint_hbone_connections", "Open HBONE connections (inbound: from clients; outbound: the upstream pool).", []string{"direction"}, nil)
	descStreams     = prometheus.NewDesc("warren_waypoint_hbone_streams", "Open HBONE streams.", []string{"direction"}, nil)
)

// collector reads the proxy's state at scrape time.
type collector struct{ p *Proxy }

func newCollector(p *Proxy) prometheus.Collector { return collector{p} }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReady, descXDS, descUpdates, descResources, descLastUpdate, descCertExpiry,
		descCertRot, descCertFail, descRoots, descRootsExpiry, descConns, descStreams} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	p := c.p
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	counter := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, lv...)
	}
	gauge(descReady, b2f(p.Ready() == nil))
	if p.xds != nil {
		gauge(descXDS, b2f(p.xds.State().Connected))
	}
	for t, st := range p.handler.Status() {
		counter(descUpdates, float64(st.Applied), t, "applied")
		counter(descUpdates, float64(st.Rejected), t, "rejected")
		gauge(descResources, float64(st.Resources), t)
		if !st.LastApplied.IsZero() {
			gauge(descLastUpdate, float64(st.LastApplied.UnixNano())/1e9, t)
		}
	}
	is := p.identity.Status()
	if !is.NotAfter.IsZero() {
		gauge(descCertExpiry, float64(is.NotAfter.Unix()))
	}
	counter(descCertRot, float64(is.Rotations))
	gauge(descCertFail, float64(is.Failures))
	roots := p.bundle.Roots()
	gauge(descRoots, float64(len(roots)))
	if len(roots) > 0 {
		first := roots[0].NotAfter
		for _, r := range roots[1:] {
			if r.NotAfter.Before(first) {
				first = r.NotAfter
			}
		}
		gauge(descRootsExpiry, float64(first.Unix()))
	}
	in, out := p.hbone.Stats(), p.pool.Stats()
	gauge(descConns, float64(in.Connections), "inbound")
	gauge(descConns, float64(out.Connections), "outbound")
	gauge(descStreams, float64(in.Streams), "inbound")
	gauge(descStreams, float64(out.Streams), "outbound")
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
