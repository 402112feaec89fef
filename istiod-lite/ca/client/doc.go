// Package client is the data plane's way to the certificate service: it
// dials istiod-lite on 15012 over TLS (trusting the root from the
// warren-ca-root-cert ConfigMap or a mounted file, and checking the
// server's SPIFFE ID), authenticates with a ServiceAccount or bootstrap
// token, and turns a fresh key plus CSR into an SVID. Its Fetcher plugs
// into certs.IdentitySource.
//
// It imports only the wire types (istiod-lite/api/ca/v1) and certs, never
// the rest of istiod-lite.
package client
