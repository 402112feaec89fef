// Package v1alpha1 holds the Go types of Warren's own Kubernetes API,
// security.warren.io/v1alpha1: the AuthorizationPolicy CRD (manifest in
// manifests/crds). Plain data types with hand-written deep copies; no logic.
//
// +groupName=security.warren.io
package v1alpha1
