// Package ztunnel is Warren's per-node L4 proxy: in-pod listeners (15001
// outbound, 15006 inbound plaintext, 15008 HBONE) for every enrolled pod on
// its node, HBONE tunnels (HTTP/2 CONNECT over mutual TLS with SPIFFE
// identities) between nodes, L4 authorization, metrics and an admin API.
//
// It is data plane: it may import certs, istiod-lite/api and the
// istiod-lite client packages, never the rest of istiod-lite. Its hbone
// sub-package is shared with the waypoint.
package ztunnel
