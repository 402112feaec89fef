package deploy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Kinds, the values of the metrics' kind label.
const (
	kindServiceAccount = "ServiceAccount"
	kindService        = "Service"
	kindDeployment     = "Deployment"
)

type metrics struct {
	applies, deletes, errors *prometheus.CounterVec
}

// newMetrics creates and registers (when reg is not nil):
//
//	warren_deploy_applies_total{kind}  server-side applies sent
//	warren_deploy_deletes_total{kind}  objects deleted because their waypoint went away
//	warren_deploy_errors_total{kind}   failed applies and deletes, and name clashes
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	vec := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"kind"})
	}
	m := &metrics{
		applies: vec("warren_deploy_applies_total", "Server-side applies of waypoint objects, by kind."),
		deletes: vec("warren_deploy_deletes_total", "Waypoint objects deleted because their Gateway no longer needs them, by kind."),
		errors:  vec("warren_deploy_errors_total", "Failed applies or deletes of waypoint objects, and objects in the way, by kind."),
	}
	for _, k := range []string{kindServiceAccount, kindService, kindDeployment} {
		m.applies.WithLabelValues(k)
		m.deletes.WithLabelValues(k)
		m.errors.WithLabelValues(k)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.applies, m.deletes, m.errors} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("deploy: metrics: %w", err)
			}
		}
	}
	return m, nil
}
