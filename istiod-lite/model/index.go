package model

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Key is "<namespace>/<name>".
func Key(namespace, name string) string { return namespace + "/" + name }

// Index is a Snapshot with lookups. Build it once per snapshot.
type Index struct {
	*Snapshot

	namespaces    map[string]*corev1.Namespace
	nodes         map[string]*corev1.Node
	services      map[string]*corev1.Service // ns/name
	servicesByVIP map[netip.Addr]*corev1.Service
	podsByNS      map[string][]*corev1.Pod
	podsByIP      map[netip.Addr]*corev1.Pod
	classes       map[string]*gwv1.GatewayClass
	gateways      map[string]*gwv1.Gateway
	grantsByNS    map[string][]*gwv1.ReferenceGrant
	// selectorPods caches the pods each Service selects; podServices the
	// reverse, filled on first use.
	selectorPods map[string][]*corev1.Pod
	servicesByNS map[string][]*corev1.Service
}

// NewIndex indexes s. Lists are sorted by namespace/name so every output
// derived from the index is deterministic.
func NewIndex(s *Snapshot) *Index {
	s.Config = s.Config.Defaults()
	sortByKey(s.Namespaces)
	sortByKey(s.Pods)
	sortByKey(s.Services)
	sortByKey(s.EndpointSlices)
	sortByKey(s.Nodes)
	sortByKey(s.GatewayClasses)
	sortByKey(s.Gateways)
	sortByKey(s.HTTPRoutes)
	sortByKey(s.GRPCRoutes)
	sortByKey(s.ReferenceGrants)
	sortByKey(s.BackendTrafficPolicies)
	sortByKey(s.AuthorizationPolicies)
	ix := &Index{
		Snapshot:      s,
		namespaces:    map[string]*corev1.Namespace{},
		nodes:         map[string]*corev1.Node{},
		services:      map[string]*corev1.Service{},
		servicesByVIP: map[netip.Addr]*corev1.Service{},
		podsByNS:      map[string][]*corev1.Pod{},
		podsByIP:      map[netip.Addr]*corev1.Pod{},
		classes:       map[string]*gwv1.GatewayClass{},
		gateways:      map[string]*gwv1.Gateway{},
		grantsByNS:    map[string][]*gwv1.ReferenceGrant{},
		selectorPods:  map[string][]*corev1.Pod{},
		servicesByNS:  map[string][]*corev1.Service{},
	}
	for _, n := range s.Namespaces {
		ix.namespaces[n.Name] = n
	}
	for _, n := range s.Nodes {
		ix.nodes[n.Name] = n
	}
	for _, svc := range s.Services {
		ix.services[Key(svc.Namespace, svc.Name)] = svc
		ix.servicesByNS[svc.Namespace] = append(ix.servicesByNS[svc.Namespace], svc)
		for _, ip := range ServiceIPs(svc) {
			ix.servicesByVIP[ip] = svc
		}
	}
	for _, p := range s.Pods {
		ix.podsByNS[p.Namespace] = append(ix.podsByNS[p.Namespace], p)
		for _, ip := range PodIPs(p) {
			ix.podsByIP[ip] = p
		}
	}
	for _, c := range s.GatewayClasses {
		ix.classes[c.Name] = c
	}
	for _, g := range s.Gateways {
		ix.gateways[Key(g.Namespace, g.Name)] = g
	}
	for _, g := range s.ReferenceGrants {
		ix.grantsByNS[g.Namespace] = append(ix.grantsByNS[g.Namespace], g)
	}
	return ix
}

// Namespace returns the namespace object or nil.
func (ix *Index) Namespace(name string) *corev1.Namespace { return ix.namespaces[name] }

// Node returns the node or nil.
func (ix *Index) Node(name string) *corev1.Node { return ix.nodes[name] }

// Service returns the Service ns/name or nil.
func (ix *Index) Service(ns, name string) *corev1.Service { return ix.services[Key(ns, name)] }

// ServiceByVIP returns the Service with cluster IP ip, or nil.
func (ix *Index) ServiceByVIP(ip netip.Addr) *corev1.Service { return ix.servicesByVIP[ip] }

// PodByIP returns the pod with IP ip, or nil.
func (ix *Index) PodByIP(ip netip.Addr) *corev1.Pod { return ix.podsByIP[ip] }

// GatewayClass returns the class or nil.
func (ix *Index) GatewayClass(name string) *gwv1.GatewayClass { return ix.classes[name] }

// Gateway returns the Gateway ns/name or nil.
func (ix *Index) Gateway(ns, name string) *gwv1.Gateway { return ix.gateways[Key(ns, name)] }

// Grants returns the ReferenceGrants in namespace ns.
func (ix *Index) Grants(ns string) []*gwv1.ReferenceGrant { return ix.grantsByNS[ns] }

// SelectedPods returns the pods a Service's selector matches (none for a
// Service without selector), in name order.
func (ix *Index) SelectedPods(svc *corev1.Service) []*corev1.Pod {
	key := Key(svc.Namespace, svc.Name)
	if pods, ok := ix.selectorPods[key]; ok {
		return pods
	}
	var out []*corev1.Pod
	if len(svc.Spec.Selector) > 0 {
		for _, p := range ix.podsByNS[svc.Namespace] {
			if selects(svc.Spec.Selector, p.Labels) {
				out = append(out, p)
			}
		}
	}
	ix.selectorPods[key] = out
	return out
}

// selects is equality-based selector matching (what a Service selector is):
// every key of sel present in labels with the same value.
func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// ServicesSelecting returns the Services in the pod's namespace whose
// selector matches it, in name order.
func (ix *Index) ServicesSelecting(p *corev1.Pod) []*corev1.Service {
	var out []*corev1.Service
	for _, svc := range ix.servicesByNS[p.Namespace] {
		if len(svc.Spec.Selector) > 0 && selects(svc.Spec.Selector, p.Labels) {
			out = append(out, svc)
		}
	}
	return out
}

// PodIPs returns a pod's IPs (status.podIPs, else status.podIP).
func PodIPs(p *corev1.Pod) []netip.Addr {
	var out []netip.Addr
	for _, ip := range p.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			out = append(out, a)
		}
	}
	if len(out) == 0 && p.Status.PodIP != "" {
		if a, err := netip.ParseAddr(p.Status.PodIP); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// ServiceIPs returns a Service's cluster IPs (none for headless).
func ServiceIPs(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// Hostname is the Service's DNS name, name.ns.svc.<cluster domain>.
func (ix *Index) Hostname(svc *corev1.Service) string {
	return svc.Name + "." + svc.Namespace + ".svc." + ix.Config.ClusterDomain
}

type keyed interface {
	GetNamespace() string
	GetName() string
}

// sortByKey orders by namespace/name; sources usually hand over sorted
// lists, which cost one pass to confirm.
func sortByKey[T keyed](s []T) {
	cmp := func(a, b T) int {
		if c := strings.Compare(a.GetNamespace(), b.GetNamespace()); c != 0 {
			return c
		}
		return strings.Compare(a.GetName(), b.GetName())
	}
	if !slices.IsSortedFunc(s, cmp) {
		slices.SortStableFunc(s, cmp)
	}
}
