// Package source holds istiod-lite's inputs: source/file reads a directory
// of YAML (the whole mesh, workloads included, without a cluster) and
// source/kube watches Kubernetes with informers. Both produce
// model.Snapshots; neither translates nor writes status.
package source
