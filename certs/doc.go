// Package certs owns Warren's workload identity: the SPIFFE certificate
// authority, X.509 SVIDs, trust bundles with several roots, the rotating
// identity source the data plane serves certificates from, and the TLS
// configurations HBONE uses on both ends.
//
// Identities are spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
// Keys are ECDSA P-256; SVIDs carry exactly one SAN, the URI of that identity.
//
// The package is a library: it never logs, never talks to Kubernetes or the
// network, and keeps state on disk only where the caller gives it a data
// directory. Both the control plane (istiod-lite/ca) and the data plane
// (ztunnel, waypoint) import it, so it must not import either.
package certs
