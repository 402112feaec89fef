package status

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Kinds, the values of the metrics' kind label.
const (
	KindGatewayClass         = "GatewayClass"
	KindGateway              = "Gateway"
	KindHTTPRoute            = "HTTPRoute"
	KindGRPCRoute            = "GRPCRoute"
	KindBackendTrafficPolicy = "XBackendTrafficPolicy"
	KindAuthorizationPolicy  = "AuthorizationPolicy"
)

type metrics struct {
	writes, conflicts, errors *prometheus.CounterVec
}

// newMetrics creates and registers (when reg is not nil):
//
//	warren_status_writes_total{kind}     status updates written
//	warren_status_conflicts_total{kind}  updates refused with a conflict, then retried after a fresh read
//	warren_status_errors_total{kind}     updates that failed for good (after retries)
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	vec := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"kind"})
	}
	m := &metrics{
		writes:    vec("warren_status_writes_total", "Status updates written to the API server, by kind."),
		conflicts: vec("warren_status_conflicts_total", "Status updates refused with a conflict (retried after a fresh read), by kind."),
		errors:    vec("warren_status_errors_total", "Status updates that failed after retries, by kind."),
	}
	for _, k := range []string{KindGatewayClass, KindGateway, KindHTTPRoute, KindGRPCRoute, KindBackendTrafficPolicy, KindAuthorizationPolicy} {
		m.writes.WithLabelValues(k)
		m.conflicts.WithLabelValues(k)
		m.errors.WithLabelValues(k)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.writes, m.conflicts, m.errors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("status: metrics: %w", err)
			}
		}
	}
	return m, nil
}
