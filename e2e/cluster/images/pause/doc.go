// Command pause is the local cluster's pod sandbox image: it holds the pod's
// namespaces open, reaps the zombies of a shared PID namespace, and exits 0
// on SIGINT or SIGTERM. It is a static Go binary (CGO_ENABLED=0) on an empty
// base, built and imported by e2e/cluster.
package main
