// Package kube is istiod-lite's Kubernetes source: client-go informers for
// Namespaces, Pods, Services, EndpointSlices, Nodes, the waypoint
// Deployments (label gateway.networking.k8s.io/gateway-name), the Gateway
// API objects (GatewayClass, Gateway, HTTPRoute, GRPCRoute, ReferenceGrant,
// XBackendTrafficPolicy) and Warren's AuthorizationPolicy, from which it
// builds a model.Snapshot on demand and signals changes on a coalescing
// channel.
//
// CRDs may be missing: a kind whose CRD is not installed is reported once
// through the optional logger, left out of snapshots, and picked up when
// the CRD appears (discovery is polled). An AuthorizationPolicy that does
// not convert to the typed struct is counted, reported and skipped.
//
// It owns reading only: it never writes to the API server, never
// translates, and never modifies the objects it hands out (snapshots share
// them with the informer caches, so consumers must treat them read-only).
package kube
