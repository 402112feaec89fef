package xds

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Refusal reasons, the values of the reason label.
const (
	reasonUnauthenticated  = "unauthenticated"
	reasonPermissionDenied = "permission_denied"
	reasonInvalid          = "invalid_request"
	reasonInternal         = "internal"
)

type metrics struct {
	connected prometheus.Gauge
	pushes    *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	resources *prometheus.CounterVec
	acks      *prometheus.CounterVec
	nacks     *prometheus.CounterVec
	latency   prometheus.Histogram
	refused   *prometheus.CounterVec
}

// counters are the totals /debug/status reports (independent of whether
// a Registerer was given).
type counters struct {
	pushes, bytes atomic.Uint64
}

// newMetrics registers the xDS metrics, with Istio's pilot names where
// Istio has one. The type label is the short type name (Workload,
// TrustBundle, ...).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pilot_xds", Help: "Proxies connected over delta xDS.",
		}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_xds_pushes", Help: "Delta xDS responses sent, by type.",
		}, []string{"type"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warren_xds_push_bytes_total", Help: "Bytes of delta xDS responses sent, by type.",
		}, []string{"type"}),
		resources: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warren_xds_pushed_resources_total", Help: "Resources sent or removed in delta xDS responses, by type.",
		}, []string{"type"}),
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warren_xds_acks_total", Help: "Responses ACKed by proxies, by type.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pilot_total_xds_rejects", Help: "Responses NACKed (rejected) by proxies, by type.",
		}, []string{"type"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pilot_proxy_convergence_time",
			Help:    "Seconds from a configuration change (including the debounce window) to its push to a proxy.",
			Buckets: []float64{.005, .01, .02, .03, .05, .1, .25, .5, 1, 3, 10},
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warren_xds_refused_streams_total", Help: "xDS streams refused, by reason.",
		}, []string{"reason"}),
	}
	for _, r := range []string{reasonUnauthenticated, reasonPermissionDenied, reasonInvalid, reasonInternal} {
		m.refused.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.connected, m.pushes, m.bytes, m.resources, m.acks, m.nacks, m.latency, m.refused} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
