// Package podtest builds what redirect's root tests and benchmarks need on
// one shared kernel: network namespaces joined by veth pairs, cgroups the
// test owns, bpffs pin directories, "pod" processes running inside a netns
// and a cgroup, test servers, and a fake ztunnel speaking redirect/nodeproto
// for real. Every name is unique per test and everything is removed in
// t.Cleanup, so packages can run in parallel.
//
// It is test support: production code must not import it.
package podtest
