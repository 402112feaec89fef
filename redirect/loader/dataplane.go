package loader

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
)

// Dataplane is the kernel state of capture on one node, as the agent drives
// it. Every method is idempotent; Enrol and Release converge one pod,
// SetSkipCgroups and SetProbeSources replace a whole set.
type Dataplane interface {
	// OpenNetns opens a pod's network namespace and reads its cookie.
	OpenNetns(path string) (Netns, error)
	// Enrolled returns the pods (by netns cookie) the kernel captures now,
	// including those adopted from pins left by a previous agent.
	Enrolled() (map[uint64]PodConfig, error)
	// Enrol makes capture of the pod in ns match cfg. inbound holds
	// ztunnel's inbound (15006) listeners in that namespace (one dual-stack
	// or one per family); nil keeps the listeners already installed. Capture
	// switches on last, once the listeners and exclusions are in place.
	Enrol(ns Netns, cfg PodConfig, inbound []*os.File) error
	// Release stops capture for a netns cookie (capture switches off first)
	// and removes everything kept for it. Releasing an unknown cookie is not
	// an error.
	Release(cookie uint64) error
	// SetSkipCgroups sets the cgroup v2 ids whose sockets are never
	// captured (ztunnel's).
	SetSkipCgroups(ids []uint64) error
	// SetProbeSources sets the source addresses inbound steering leaves
	// alone (the node's: kubelet probes).
	SetProbeSources(addrs []netip.Addr) error
	// OriginalDst returns a read-only handle on the original-destination
	// map for ztunnel (see redirect/nodeproto), or nil if there is none.
	OriginalDst() (*os.File, error)
	// Stats returns the capture counters by name.
	Stats() (map[string]uint64, error)
	// Close releases this process's handles; pinned capture stays.
	Close() error
}

// PodConfig is the per-pod part of capture: what is left alone.
type PodConfig struct {
	// ExcludeOutboundPorts are destination ports connects keep.
	ExcludeOutboundPorts []uint16
	// ExcludeInboundPorts are local ports inbound connections keep.
	ExcludeInboundPorts []uint16
	// ExcludeOutboundCIDRs are destinations connects keep.
	ExcludeOutboundCIDRs []netip.Prefix
}

// Normalize returns cfg with sorted, de-duplicated, masked fields and IPv4
// prefixes unmapped, so that equal configurations compare equal.
func (c PodConfig) Normalize() PodConfig {
	out := PodConfig{
		ExcludeOutboundPorts: sortedPorts(c.ExcludeOutboundPorts),
		ExcludeInboundPorts:  sortedPorts(c.ExcludeInboundPorts),
	}
	for _, p := range c.ExcludeOutboundCIDRs {
		if !p.IsValid() {
			continue
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out.ExcludeOutboundCIDRs = append(out.ExcludeOutboundCIDRs, p.Masked())
	}
	slices.SortFunc(out.ExcludeOutboundCIDRs, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	out.ExcludeOutboundCIDRs = slices.Compact(out.ExcludeOutboundCIDRs)
	return out
}

// Equal reports whether two configurations capture the same way.
func (c PodConfig) Equal(o PodConfig) bool {
	a, b := c.Normalize(), o.Normalize()
	return slices.Equal(a.ExcludeOutboundPorts, b.ExcludeOutboundPorts) &&
		slices.Equal(a.ExcludeInboundPorts, b.ExcludeInboundPorts) &&
		slices.Equal(a.ExcludeOutboundCIDRs, b.ExcludeOutboundCIDRs)
}

// Validate rejects configurations the kernel maps cannot hold.
func (c PodConfig) Validate() error {
	for _, p := range append(slices.Clone(c.ExcludeOutboundPorts), c.ExcludeInboundPorts...) {
		if p == 0 {
			return fmt.Errorf("loader: excluded port 0")
		}
	}
	for _, p := range c.ExcludeOutboundCIDRs {
		if !p.IsValid() {
			return fmt.Errorf("loader: invalid excluded CIDR %v", p)
		}
	}
	return nil
}

func sortedPorts(in []uint16) []uint16 {
	if len(in) == 0 {
		return nil
	}
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}
