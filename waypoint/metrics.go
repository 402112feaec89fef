package waypoint

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names. Istio's where Istio has one.
const (
	metricRequests       = "istio_requests_total"
	metricDuration       = "istio_request_duration_milliseconds"
	metricRetries        = "warren_waypoint_retries_total"
	metricBudgetExceeded = "warren_waypoint_retry_budget_exceeded_total"
	metricDenied         = "warren_waypoint_authz_denied_total"
	metricEjections      = "warren_waypoint_outlier_ejections_total"
	metricMirrors        = "warren_waypoint_mirror_requests_total"
	metricTCP            = "istio_tcp_connections_opened_total"
)

var requestLabels = []string{"reporter", "source_workload", "source_workload_namespace", "source_principal",
	"destination_service", "destination_service_namespace", "destination_workload", "request_protocol",
	"response_code", "grpc_response_status", "response_flags"}

type metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	retries   *prometheus.CounterVec
	budget    *prometheus.CounterVec
	denied    *prometheus.CounterVec
	ejections *prometheus.CounterVec
	mirrors   *prometheus.CounterVec
	tcp       *prometheus.CounterVec

	cache sync.Map // labelKey → *series
}

type series struct {
	count prometheus.Counter
	dur   prometheus.Observer
}

// labelKey is one request series (the label values in order).
type labelKey struct {
	srcWorkload, srcNS, srcPrincipal, dstService, dstNS, dstWorkload, proto string
	code                                                                    int
	grpc, flags                                                             string
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricRequests,
			Help: "Requests handled by the waypoint."}, requestLabels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metricDuration,
			Help:    "Request duration at the waypoint, first byte in to last byte out.",
			Buckets: []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000}}, requestLabels),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricRetries,
			Help: "Retries sent to a backend Service."}, []string{"destination_service"}),
		budget: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricBudgetExceeded,
			Help: "Retries not sent because the backend Service's retry budget was exhausted; the original failure was returned."}, []string{"destination_service"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricDenied,
			Help: "Requests denied by authorization policy (403)."}, []string{"destination_service", "policy", "reason"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricEjections,
			Help: "Endpoints ejected after consecutive connect failures."}, []string{"destination_service"}),
		mirrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricMirrors,
			Help: "Mirrored requests by outcome (sent, failed, dropped)."}, []string{"destination_service", "result"}),
		tcp: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricTCP,
			Help: "Opaque TCP connections passed through."}, []string{"reporter", "source_workload", "destination_service"}),
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.retries, m.budget, m.denied, m.ejections, m.mirrors, m.tcp} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(k labelKey, ms float64) {
	v, ok := m.cache.Load(k)
	if !ok {
		lv := []string{"waypoint", k.srcWorkload, k.srcNS, k.srcPrincipal, k.dstService, k.dstNS, k.dstWorkload, k.proto,
			strconv.Itoa(k.code), k.grpc, k.flags}
		v, _ = m.cache.LoadOrStore(k, &series{count: m.requests.WithLabelValues(lv...), dur: m.duration.WithLabelValues(lv...)})
	}
	s := v.(*series)
	s.count.Inc()
	s.dur.Observe(ms)
}
