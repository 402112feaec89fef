// Package waypoint is Warren's L7 proxy for mesh traffic: it terminates
// HBONE, applies Gateway API HTTPRoute and GRPCRoute rules (GAMMA producer
// and consumer routes), retries within budgets, load-balances, and
// re-originates HBONE to the chosen endpoint.
//
// It is data plane: it may import certs, ztunnel/hbone, istiod-lite/api and
// the istiod-lite client packages, never the rest of istiod-lite.
package waypoint
