package model

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Enrolled reports whether a pod's traffic is in the mesh and why: the pod
// label wins (ambient opts in, none opts out), then the namespace label.
// Host-network pods are never enrolled.
func (ix *Index) Enrolled(p *corev1.Pod) (bool, string) {
	if p.Spec.HostNetwork {
		return false, "pod uses the host network"
	}
	switch p.Labels[LabelDataplaneMode] {
	case DataplaneNone:
		return false, fmt.Sprintf("pod label %s=%s", LabelDataplaneMode, DataplaneNone)
	case DataplaneAmbient:
		return true, fmt.Sprintf("pod label %s=%s", LabelDataplaneMode, DataplaneAmbient)
	}
	if ns := ix.Namespace(p.Namespace); ns != nil && ns.Labels[LabelDataplaneMode] == DataplaneAmbient {
		return true, fmt.Sprintf("namespace %s label %s=%s", p.Namespace, LabelDataplaneMode, DataplaneAmbient)
	}
	return false, "neither the pod nor its namespace is labelled " + LabelDataplaneMode + "=" + DataplaneAmbient
}

// NamespaceEnrolled reports whether the namespace carries the enrol label.
func (ix *Index) NamespaceEnrolled(ns string) bool {
	n := ix.Namespace(ns)
	return n != nil && n.Labels[LabelDataplaneMode] == DataplaneAmbient
}

// MTLSStrict reports whether a pod rejects plaintext: pod label, then
// namespace label, default permissive.
func (ix *Index) MTLSStrict(p *corev1.Pod) bool {
	if v, ok := p.Labels[LabelMTLSMode]; ok {
		return v == MTLSStrict
	}
	if ns := ix.Namespace(p.Namespace); ns != nil {
		return ns.Labels[LabelMTLSMode] == MTLSStrict
	}
	return false
}

// TrafficType is what a waypoint binding is for.
type TrafficType string

// Traffic types.
const (
	ServiceTraffic  TrafficType = WaypointForService
	WorkloadTraffic TrafficType = WaypointForWorkload
)

// WaypointBinding is the outcome of resolving use-waypoint labels.
type WaypointBinding struct {
	// Gateway is the bound waypoint, nil when none applies.
	Gateway *gwv1.Gateway
	// Source says which label decided ("pod shop/web-1", "namespace shop"…).
	Source string
	// Problem is set when a label names an unusable waypoint (missing,
	// wrong class, wrong waypoint-for); no waypoint is used then.
	Problem string
}

// WaypointForService resolves the waypoint of a Service frontend: the
// Service's label, else its namespace's.
func (ix *Index) WaypointForService(svc *corev1.Service) WaypointBinding {
	if ix.IsWaypointService(svc) {
		return WaypointBinding{Source: "the Service of waypoint " + Key(svc.Namespace, svc.Name) + " never uses a waypoint"}
	}
	return ix.resolveWaypoint(ServiceTraffic, svc.Namespace,
		labelled{"service " + Key(svc.Namespace, svc.Name), svc.Labels},
		ix.nsLabels(svc.Namespace))
}

// WaypointForWorkload resolves the waypoint for traffic addressed to a pod
// directly: the pod's label, else its namespace's. Only waypoints serving
// workload traffic (waypoint-for workload or all) bind.
func (ix *Index) WaypointForWorkload(p *corev1.Pod) WaypointBinding {
	return ix.resolveWaypoint(WorkloadTraffic, p.Namespace,
		labelled{"pod " + Key(p.Namespace, p.Name), p.Labels},
		ix.nsLabels(p.Namespace))
}

type labelled struct {
	what   string
	labels map[string]string
}

func (ix *Index) nsLabels(ns string) labelled {
	var l map[string]string
	if n := ix.Namespace(ns); n != nil {
		l = n.Labels
	}
	return labelled{"namespace " + ns, l}
}

// IsWaypointService reports whether svc is the Service of a waypoint
// Gateway (same namespace and name): it carries HBONE to the waypoint
// itself and must never be routed through one.
func (ix *Index) IsWaypointService(svc *corev1.Service) bool {
	gw := ix.Gateway(svc.Namespace, svc.Name)
	return gw != nil && string(gw.Spec.GatewayClassName) == WaypointClass
}

// resolveWaypoint applies "most specific wins": the first object in order
// that carries the use-waypoint label decides, including "none". The last
// object is the namespace: its waypoint applies only to the traffic types
// the waypoint serves, silently (a service waypoint on a namespace is not a
// mistake for its pods).
func (ix *Index) resolveWaypoint(t TrafficType, ns string, order ...labelled) WaypointBinding {
	for i, o := range order {
		name, ok := o.labels[LabelUseWaypoint]
		if !ok {
			continue
		}
		src := fmt.Sprintf("%s label %s=%s", o.what, LabelUseWaypoint, name)
		if name == WaypointNone || name == "" {
			return WaypointBinding{Source: src}
		}
		gwNS := ns
		if v := o.labels[LabelUseWaypointNamespace]; v != "" {
			gwNS = v
		}
		gw := ix.Gateway(gwNS, name)
		switch {
		case gw == nil:
			return WaypointBinding{Source: src, Problem: fmt.Sprintf("waypoint Gateway %s not found", Key(gwNS, name))}
		case string(gw.Spec.GatewayClassName) != WaypointClass:
			return WaypointBinding{Source: src, Problem: fmt.Sprintf("Gateway %s has class %q, not %q", Key(gwNS, name), gw.Spec.GatewayClassName, WaypointClass)}
		}
		if !WaypointServes(gw, t) {
			if i == len(order)-1 {
				return WaypointBinding{Source: src + " (waypoint does not serve " + string(t) + " traffic)"}
			}
			return WaypointBinding{Source: src, Problem: fmt.Sprintf("waypoint %s has %s=%s and does not serve %s traffic", Key(gwNS, name), LabelWaypointFor, WaypointFor(gw), t)}
		}
		return WaypointBinding{Gateway: gw, Source: src}
	}
	return WaypointBinding{Source: "no " + LabelUseWaypoint + " label"}
}

// WaypointFor returns a waypoint Gateway's waypoint-for value (default service).
func WaypointFor(gw *gwv1.Gateway) string {
	if v := gw.Labels[LabelWaypointFor]; v != "" {
		return v
	}
	return WaypointForService
}

// WaypointServes reports whether gw serves traffic of type t.
func WaypointServes(gw *gwv1.Gateway, t TrafficType) bool {
	switch WaypointFor(gw) {
	case WaypointForAll:
		return true
	case WaypointForService:
		return t == ServiceTraffic
	case WaypointForWorkload:
		return t == WorkloadTraffic
	}
	return false
}
