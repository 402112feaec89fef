// Package ca is istiod-lite's certificate service: the gRPC
// CertificateService on port 15012 over TLS, which authenticates callers by
// Kubernetes ServiceAccount token (TokenReview, audience "warren-ca") or a
// bootstrap token file, authorizes the identity asked for (a caller's own,
// or node-scoped impersonation by a node proxy for pods on its own node),
// signs with a certs.CA, publishes the trust bundle in the
// warren-ca-root-cert ConfigMaps, and exports Prometheus metrics.
//
// It must not import the data plane; proxies reach it only through
// istiod-lite/ca/client.
package ca
