package main

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// traceWhy adds the reasons only the objects know — which label enrolled
// a pod or chose a waypoint, routes that bind a Service without effect —
// to a trace computed from proxy configuration. The zero value knows
// nothing (live traces from istiod-lite's translation without API access).
type traceWhy struct {
	m *mesh
}

func (w traceWhy) enrolled(ns, name string) string {
	if w.m == nil {
		return ""
	}
	p := podByName(w.m.ix, ns, name)
	if p == nil {
		return ""
	}
	_, why := w.m.ix.Enrolled(p)
	return why
}

func (w traceWhy) serviceWaypoint(ns, name string) string {
	if w.m == nil {
		return ""
	}
	svc := w.m.ix.Service(ns, name)
	if svc == nil {
		return ""
	}
	return bindingWhy(w.m.ix.WaypointForService(svc))
}

func (w traceWhy) workloadWaypoint(ns, name string) string {
	if w.m == nil {
		return ""
	}
	p := podByName(w.m.ix, ns, name)
	if p == nil {
		return ""
	}
	return bindingWhy(w.m.ix.WaypointForWorkload(p))
}

// bindingWhy renders a waypoint binding: which label decided, and the
// problem when the label names an unusable waypoint.
func bindingWhy(b model.WaypointBinding) string {
	switch {
	case b.Problem != "":
		return b.Source + ": " + b.Problem
	case b.Gateway != nil:
		return "chosen by " + b.Source
	}
	return b.Source
}

// inertRoutes lists routes bound to the Service that no waypoint serves.
func (w traceWhy) inertRoutes(ns, name string) []string {
	if w.m == nil {
		return nil
	}
	var out []string
	add := func(kind, key string, parents []gwv1.RouteParentStatus) {
		for _, p := range parents {
			if !isServiceRef(p.ParentRef, key, ns, name) {
				continue
			}
			for _, c := range p.Conditions {
				if c.Type == translate.WaypointBoundCondition && c.Status == metav1.ConditionFalse {
					out = append(out, fmt.Sprintf("%s %s is attached to Service %s/%s but has no effect: no waypoint serves the Service (see analyze WA003)", kind, key, ns, name))
				}
			}
		}
	}
	for _, k := range sortedKeys(w.m.out.Status.HTTPRoutes) {
		add("HTTPRoute", k, w.m.out.Status.HTTPRoutes[k])
	}
	for _, k := range sortedKeys(w.m.out.Status.GRPCRoutes) {
		add("GRPCRoute", k, w.m.out.Status.GRPCRoutes[k])
	}
	return out
}

// missingPod explains why a pod is not a workload.
func (w traceWhy) missingPod(ns, name string) error {
	if w.m != nil {
		if p := podByName(w.m.ix, ns, name); p != nil {
			switch {
			case p.Spec.HostNetwork:
				return fmt.Errorf("pod %s/%s uses the host network: it is not a mesh workload", ns, name)
			case len(model.PodIPs(p)) == 0:
				return fmt.Errorf("pod %s/%s has no IP yet (phase %s): it is not running", ns, name, dash(string(p.Status.Phase)))
			default:
				return fmt.Errorf("pod %s/%s is not a workload (phase %s)", ns, name, dash(string(p.Status.Phase)))
			}
		}
	}
	return fmt.Errorf("pod %s/%s not found", ns, name)
}

// isServiceRef reports whether a parentRef of route routeKey names
// Service ns/name.
func isServiceRef(ref gwv1.ParentReference, routeKey, ns, name string) bool {
	if ref.Kind == nil || string(*ref.Kind) != "Service" || ref.Group == nil || *ref.Group != "" || string(ref.Name) != name {
		return false
	}
	refNS := namespaceOfKey(routeKey)
	if ref.Namespace != nil && *ref.Namespace != "" {
		refNS = string(*ref.Namespace)
	}
	return refNS == ns
}

func namespaceOfKey(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i]
		}
	}
	return ""
}
