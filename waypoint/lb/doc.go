// Package lb chooses where a request goes: a backend among a route's
// weighted backends, then an endpoint of that backend's Service — the
// ready Workloads whose services map holds the Service key — by power of
// two choices on active requests, skipping endpoints ejected for failing
// connects (outlier detection), unless session persistence (cookie or
// header) names an endpoint that is still there.
//
// Endpoint state (active requests, ejection) lives in a Registry so it
// survives configuration snapshots. It never dials (upstream does),
// never retries and never logs.
package lb
