// Package waypoint is Warren's L7 proxy for mesh traffic: it terminates
// HBONE, applies Gateway API HTTPRoute and GRPCRoute rules (GAMMA producer
// and consumer routes), retries within budgets, load-balances, and
// re-originates HBONE to the chosen endpoint.
//
// This package is the L7 engine: Engine serves connections handed to it
// (HBONE streams from waypoint/tunnel; plaintext listeners for tests and
// benchmarks) through one ordered request chain, written top to bottom in
// chain.go: authorize → route → filter → forward (retry/budget) → pick
// (lb) → attempt (upstream) → respond → finish (metrics, access log).
// Store holds the configuration (L7Services, Services, Workloads,
// Authorizations, keyed as xDS names them) as an immutable compiled
// snapshot replaced atomically, and resolves tunnel destinations
// (Resolve). Sub-packages own one step each: listener (accept side,
// protocol choice), router, filters, authz, retry, lb, upstream (Dialer +
// pools), accesslog; xdsconfig (configuration in), tunnel (HBONE both
// ways) and proxy (the whole process) build on the engine.
//
// It is data plane: it may import certs, ztunnel/hbone, istiod-lite/api and
// the istiod-lite client packages, never the rest of istiod-lite (tests and
// bench/waypoint use the file source and translator to build configs).
// Like every library here it never logs: the access log is a writer it is
// given, metrics go to an injected prometheus.Registerer, errors read
// "waypoint: ...".
package waypoint
