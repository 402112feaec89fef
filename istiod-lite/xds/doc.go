// Package xds is istiod-lite's delta-xDS server: the
// envoy.service.discovery.v3 AggregatedDiscoveryService
// (DeltaAggregatedResources only) carrying warren.v1 resources packed in
// Any under type.googleapis.com/warren.v1.*.
//
// It owns the resource store the translator writes (Update, Set, SetAll;
// a resource's version is a short hash of its deterministic encoding, so
// only resources that really changed are pushed), the debounce window
// (20ms by default) that coalesces changes into one push per proxy and
// type, per-proxy subscriptions (wildcard or explicit names,
// initial_resource_versions on reconnect, removed_resources for deletes),
// the Scope hook that decides which proxy gets which resource, stream
// authentication (bearer token through ca.Authenticator) and authorization
// (a proxy gets only its own node's configuration), ACK/NACK tracking with
// the last good state kept on NACK, WaitForAck for the trust-bundle root
// switch, the /debug/syncz, /debug/config_dump and /debug/status handlers
// and the xDS metrics.
//
// It must not translate configuration (it stores and ships opaque
// messages), must not import the data plane, and never logs except
// through the optional Logger. Proxies use istiod-lite/xds/client, which
// also defines the node ID format and the type URLs.
package xds
