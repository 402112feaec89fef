// Package redirect captures enrolled pods' traffic into ztunnel's in-pod
// listeners with eBPF (cgroup connect hooks, sock_ops, sk_lookup), through
// a node agent that converges on the set of enrolled pods and a chained
// CNI plugin that enrols pods before their apps start. See
// docs/redirect.md.
//
// This package holds only what every part shares: ErrNotSupported, the
// sentinel for a kernel, capability or cgroup setup that cannot capture.
// The parts: bpf (programs and ABI), loader (kernel side), agent
// (reconciler, enrolment rules, Kubernetes and CNI glue), nodeproto (the
// agent ↔ ztunnel protocol) and cni (the plugin and its agent socket).
//
// It is data plane: nothing under redirect imports istiod-lite (beyond its
// api package, if ever needed), ztunnel or waypoint internals, and only
// binaries log.
package redirect
