// Package client is the delta-xDS client library the data plane (ztunnel,
// waypoint) uses to receive its configuration from istiod-lite: one
// envoy.service.discovery.v3 ADS stream (DeltaAggregatedResources)
// carrying warren.v1 resources, authenticated with a bearer token,
// ACK/NACK of every response, reconnection with exponential backoff and
// jitter, and initial_resource_versions on reconnect so only differences
// come back. It also owns the node ID format (ztunnel~<node>,
// waypoint~<namespace>/<gateway>~<pod>) and the type URLs.
//
// It keeps the last good configuration while the control plane is down;
// it never removes what it holds unless the control plane says so.
//
// The data plane imports it, so it must import nothing of Warren but
// istiod-lite/api (DESIGN §2), must not log except through the optional
// Logger, and holds no resource state of its own beyond versions: the
// Handler owns the data.
package client
