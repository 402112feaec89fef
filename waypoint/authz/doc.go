// Package authz evaluates Warren AuthorizationPolicies at the waypoint,
// the first step of its request chain: source identity and namespace
// (from the verified peer certificate), destination port, and the L7
// conditions only a waypoint can see (method, path, headers).
//
// Semantics (as Istio): a DENY policy that matches denies; otherwise, if
// any ALLOW policy applies, the request must match one of them; with no
// ALLOW policy the request is allowed. A policy matches when any of its
// rules matches; a rule matches when every non-empty field does.
//
// It decides only: it never writes responses, counts metrics or logs.
package authz
