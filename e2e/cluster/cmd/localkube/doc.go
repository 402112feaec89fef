// Command localkube runs Warren's local multi-node Kubernetes (package
// e2e/cluster) as root:
//
//	localkube up [-nodes 2] [-dns=false] [-conformance-images]
//	                               build what is missing, start (with cluster DNS unless -dns=false),
//	                               print `export KUBECONFIG=...`
//	localkube status               processes (with memory), nodes, pods
//	localkube load-image TAR...    import image tarballs into every node
//	localkube load-image -ref warren.local/x:dev -go ./cmd/x [-busybox] [-entrypoint /usr/local/bin/x]
//	localkube load-image -conformance
//	                               build and import the Gateway API conformance images
//	localkube down                 remove everything up created, restore sysctls
//
// Common flags (before or after the subcommand): -name, -state-dir, -json.
package main
