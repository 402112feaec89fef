package ca

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/certs"
)

// Failure reasons, the values of the reason label.
const (
	ReasonUnauthenticated  = "unauthenticated"
	ReasonPermissionDenied = "permission_denied"
	ReasonInvalidRequest   = "invalid_request"
	ReasonInternal         = "internal"
)

type metrics struct {
	requests prometheus.Counter
	issued   prometheus.Counter
	failures *prometheus.CounterVec
}

// newMetrics registers the CA's metrics. Istio's citadel names are kept
// where Istio has one, so existing dashboards work.
func newMetrics(reg prometheus.Registerer, ca *certs.CA) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_csr_count", Help: "Certificate signing requests received.",
		}),
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "citadel_server_success_cert_issuance_count", Help: "Certificates issued.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warren_ca_failures_total", Help: "Certificate requests refused, by reason.",
		}, []string{"reason"}),
	}
	for _, r := range []string{ReasonUnauthenticated, ReasonPermissionDenied, ReasonInvalidRequest, ReasonInternal} {
		m.failures.WithLabelValues(r)
	}
	rootExpiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "citadel_server_root_cert_expiry_timestamp", Help: "Unix time at which the active signing root expires.",
	}, func() float64 { return float64(ca.Signer().Root.NotAfter.Unix()) })
	chainExpiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "citadel_server_cert_chain_expiry_timestamp", Help: "Unix time at which the signing certificate chain (intermediate, or the root when self-signed) expires.",
	}, func() float64 { return float64(ca.Signer().NotAfter().Unix()) })
	roots := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "warren_ca_trust_bundle_roots", Help: "Roots in the trust bundle (more than one during a rotation).",
	}, func() float64 { return float64(len(ca.Bundle().Roots())) })
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.issued, m.failures, rootExpiry, chainExpiry, roots} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
