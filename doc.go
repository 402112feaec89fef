// Package warren is the module root of Warren, a sidecarless service mesh.
// It holds no code, only repository-wide tests (the dependency rule of
// docs/architecture.md).
package warren
