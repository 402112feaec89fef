package model

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwxv1a1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"

	secv1 "github.com/warren-mesh/warren/istiod-lite/api/security/v1alpha1"
)

// MeshConfig is the mesh-wide settings translation needs.
type MeshConfig struct {
	// TrustDomain of workload identities. Default cluster.local.
	TrustDomain string
	// ClusterDomain of Service hostnames. Default cluster.local.
	ClusterDomain string
	// SystemNamespace where istiod-lite runs. Default warren-system.
	SystemNamespace string
}

// Defaults fills unset fields.
func (c MeshConfig) Defaults() MeshConfig {
	if c.TrustDomain == "" {
		c.TrustDomain = "cluster.local"
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = "cluster.local"
	}
	if c.SystemNamespace == "" {
		c.SystemNamespace = "warren-system"
	}
	return c
}

// Snapshot is every object translation reads, at one moment. Sources build
// it; nothing modifies it afterwards (translation treats it as read-only).
type Snapshot struct {
	Config                 MeshConfig
	Namespaces             []*corev1.Namespace
	Pods                   []*corev1.Pod
	Services               []*corev1.Service
	EndpointSlices         []*discoveryv1.EndpointSlice
	Nodes                  []*corev1.Node
	GatewayClasses         []*gwv1.GatewayClass
	Gateways               []*gwv1.Gateway
	HTTPRoutes             []*gwv1.HTTPRoute
	GRPCRoutes             []*gwv1.GRPCRoute
	ReferenceGrants        []*gwv1.ReferenceGrant
	BackendTrafficPolicies []*gwxv1a1.XBackendTrafficPolicy
	AuthorizationPolicies  []*secv1.AuthorizationPolicy
	// WaypointDeployments are the Deployments the waypoint deployer
	// created (their availability makes a waypoint Programmed).
	WaypointDeployments []*appsv1.Deployment
	// TrustBundlePEM is the CA's current roots, one PEM per root.
	TrustBundlePEM []string
}
