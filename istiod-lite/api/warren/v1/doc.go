// Package warrenv1 is the generated code of warren.v1: the per-proxy
// configuration istiod-lite sends over delta xDS (Workload, Service,
// Authorization, TrustBundle for ztunnel; L7Service for waypoints).
// Regenerate with `make generate`; do not edit the .pb.go files by hand.
package warrenv1
