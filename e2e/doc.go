// Package e2e holds Warren's end-to-end tests (build tag e2e) and the local
// multi-node Kubernetes they run on (e2e/cluster). Nothing imports it.
package e2e
