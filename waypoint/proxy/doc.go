// Package proxy assembles one waypoint process (one per waypoint Gateway):
// the L7 engine (waypoint) behind an HBONE listener (waypoint/tunnel,
// ztunnel/hbone) on 15008, configuration over delta xDS from istiod-lite
// (or a static file) through waypoint/xdsconfig, its own identity
// spiffe://<td>/ns/<gateway-ns>/sa/<gateway-name> from the CA
// (istiod-lite/ca/client, renewed at half-life), one trust bundle for both
// TLS sides and the control-plane connections (bootstrapped from the
// warren-ca-root-cert file, then kept current over xDS), upstream HBONE
// through a shared pool, and the local endpoints: admin on
// localhost:15000 (/config_dump, /debug/connections, /logging), metrics
// on 15020, readiness on 15021 (/healthz/ready).
//
// cmd/waypoint maps flags to Options and calls Start; Start returns after
// a graceful drain once its context ends. Events (identity renewals,
// configuration rejected, readiness changes) go to the injected Logger;
// the package has no logger of its own and no global state.
package proxy
