// Package xdsconfig feeds the waypoint's configuration: it is the xDS
// client Handler (istiod-lite/xds/client) that keeps a waypoint.Store and
// the trust bundle current from the five resource types a waypoint
// receives — L7Service, Service, Workload, Authorization and TrustBundle —
// and, for running without a control plane, it reads the same resources
// from a YAML file (what `warrenctl x translate` prints).
//
// A response that does not apply (a route table that does not compile, a
// resource of the wrong type, a trust bundle that does not parse) is
// refused as a whole: Apply returns the error, the xDS client NACKs with
// its text, and the Store and bundle keep their last good state.
//
// It owns no goroutine but the optional file watcher, never logs (errors
// go to the caller, prefixed "waypoint: xds config"), and imports from
// istiod-lite only the API types and the xDS client's type URLs.
package xdsconfig
