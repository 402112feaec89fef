// Package redirect captures enrolled pods' traffic into ztunnel's in-pod
// listeners with eBPF (cgroup connect hooks, sk_lookup), through a node
// agent that converges on the set of enrolled pods and a chained CNI
// plugin that enrols pods before their apps start.
//
// It is data plane: it never imports istiod-lite internals.
package redirect
