// Package e2e holds Warren's end-to-end tests (build tag e2e) and the local
// multi-node Kubernetes they run on (e2e/cluster). Nothing imports it.
//
// Run them as root with `go test -tags e2e ./e2e/...`: each test brings up its
// own cluster (cluster.IsolatedOptions gives it names, subnets and ports that
// do not collide with `localkube up` or with the other tests), takes a
// cluster.TakeSnapshot before, and checks with cluster.Leaks that Down left
// nothing. docs/local-cluster.md describes the cluster.
package e2e
