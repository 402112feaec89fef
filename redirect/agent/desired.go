package agent

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/warren-mesh/warren/redirect/loader"
)

// Labels and annotations (docs/architecture.md §3).
const (
	// LabelDataplaneMode on a Namespace ("ambient") enrols its pods; on a
	// Pod, "none" opts it out and "ambient" opts it in.
	LabelDataplaneMode = "warren.io/dataplane-mode"
	ModeAmbient        = "ambient"
	ModeNone           = "none"

	AnnotationExcludeOutboundPorts = "warren.io/exclude-outbound-ports"
	AnnotationExcludeInboundPorts  = "warren.io/exclude-inbound-ports"
	AnnotationExcludeOutboundCIDRs = "warren.io/exclude-outbound-cidrs"
)

// Desired is a pod the agent should capture, before its network namespace
// is known.
type Desired struct {
	UID       string
	Namespace string
	Name      string
	IPs       []netip.Addr
	Config    loader.PodConfig
	// Warnings name annotation values that were ignored.
	Warnings []string
}

// Spec completes d with the pod's network namespace.
func (d Desired) Spec(netns string) PodSpec {
	return PodSpec{UID: d.UID, Namespace: d.Namespace, Name: d.Name, IPs: d.IPs, Netns: netns, Config: d.Config}
}

// DesiredPods decides which pods of nodeName are captured: pods of
// namespaces labelled warren.io/dataplane-mode=ambient, or pods labelled
// so themselves, unless the pod says warren.io/dataplane-mode=none; never
// host-network pods (they share the node's namespace) nor finished ones.
// Pure; the result is sorted by uid.
func DesiredPods(namespaces []corev1.Namespace, pods []corev1.Pod, nodeName string) []Desired {
	ambientNS := map[string]bool{}
	for _, ns := range namespaces {
		if ns.Labels[LabelDataplaneMode] == ModeAmbient && ns.DeletionTimestamp == nil {
			ambientNS[ns.Name] = true
		}
	}
	var out []Desired
	for i := range pods {
		p := &pods[i]
		if !PodEnrolled(p, ambientNS[p.Namespace], nodeName) {
			continue
		}
		out = append(out, desiredFor(p))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out
}

// PodEnrolled reports whether pod, in a namespace whose enrolment is
// nsAmbient, is captured on nodeName.
func PodEnrolled(p *corev1.Pod, nsAmbient bool, nodeName string) bool {
	if p.Spec.NodeName != nodeName || p.Spec.HostNetwork || p.UID == "" {
		return false
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	switch p.Labels[LabelDataplaneMode] {
	case ModeNone:
		return false
	case ModeAmbient:
		return true
	}
	return nsAmbient
}

func desiredFor(p *corev1.Pod) Desired {
	d := Desired{UID: string(p.UID), Namespace: p.Namespace, Name: p.Name}
	for _, ip := range p.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			d.IPs = append(d.IPs, a)
		}
	}
	if len(d.IPs) == 0 && p.Status.PodIP != "" {
		if a, err := netip.ParseAddr(p.Status.PodIP); err == nil {
			d.IPs = append(d.IPs, a)
		}
	}
	var w []string
	d.Config.ExcludeOutboundPorts, w = parsePorts(p.Annotations[AnnotationExcludeOutboundPorts], AnnotationExcludeOutboundPorts, w)
	d.Config.ExcludeInboundPorts, w = parsePorts(p.Annotations[AnnotationExcludeInboundPorts], AnnotationExcludeInboundPorts, w)
	d.Config.ExcludeOutboundCIDRs, w = parseCIDRs(p.Annotations[AnnotationExcludeOutboundCIDRs], w)
	d.Config = d.Config.Normalize()
	d.Warnings = w
	return d
}

// parsePorts reads "9000, 9001" (a "*" is not supported: exclude the
// pod instead).
func parsePorts(v, name string, warn []string) ([]uint16, []string) {
	var out []uint16
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			warn = append(warn, fmt.Sprintf("%s: ignored %q (want ports 1-65535)", name, f))
			continue
		}
		out = append(out, uint16(n))
	}
	return out, warn
}

// parseCIDRs reads "10.0.0.0/8, fd00::/8, 192.0.2.7" (a bare address is
// a host route).
func parseCIDRs(v string, warn []string) ([]netip.Prefix, []string) {
	var out []netip.Prefix
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				warn = append(warn, fmt.Sprintf("%s: ignored %q (want CIDRs)", AnnotationExcludeOutboundCIDRs, f))
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, warn
}
