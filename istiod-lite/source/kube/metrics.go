package kube

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	conversionErrors *prometheus.CounterVec
	missing          *prometheus.GaugeVec
}

// newMetrics creates the source's metrics and registers them on reg (when
// not nil):
//
//	warren_kube_source_conversion_errors_total{resource}  objects skipped because they did not convert
//	warren_kube_source_crd_missing{resource}              1 while a watched kind's CRD is not installed
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		conversionErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warren_kube_source_conversion_errors_total",
			Help: "Objects left out of snapshots because they did not convert to Warren's Go types.",
		}, []string{"resource"}),
		missing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "warren_kube_source_crd_missing",
			Help: "1 while the CRD of a watched kind is not installed (its objects are left out).",
		}, []string{"resource"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.conversionErrors, m.missing} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("kube source: metrics: %w", err)
			}
		}
	}
	return m, nil
}
