// Package loader owns the kernel side of capture: it checks that the kernel
// has what capture needs (ErrNotSupported otherwise), loads the programs of
// redirect/bpf, attaches the cgroup programs once at the node's pod cgroup,
// attaches one sk_lookup program per enrolled pod network namespace, keeps
// the maps in sync with the agent's desired state, and pins maps, programs
// and bpf_links under one bpffs directory so capture survives an agent
// restart and is re-adopted by the next Open.
//
// Dataplane is the interface the agent drives; Loader is the real one and
// NewFake returns an in-memory one for unit tests. The package does not
// decide which pods are enrolled, never talks to ztunnel or Kubernetes, and
// never logs.
package loader
