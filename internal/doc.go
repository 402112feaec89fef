// Package internal holds test support shared across the module (kubetest:
// a real kube-apiserver for integration tests). Nothing here ships in a
// binary.
package internal
