package translate

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/warren-mesh/warren/istiod-lite/model"
)

// ProtocolHBONE is the listener protocol of waypoint Gateways.
const ProtocolHBONE gwv1.ProtocolType = "HBONE"

type listenerInfo struct {
	l        gwv1.Listener
	problem  string // non-empty: listener invalid (reason:message)
	reason   string
	kinds    []gwv1.RouteGroupKind
	attached int32
}

// controllerOf returns our controller name for a class, or "".
func (t *translator) controllerOf(className gwv1.ObjectName) string {
	c := t.ix.GatewayClass(string(className))
	if c == nil {
		return ""
	}
	switch string(c.Spec.ControllerName) {
	case model.WaypointController, model.GatewayController:
		return string(c.Spec.ControllerName)
	}
	return ""
}

func (t *translator) gatewayClasses() {
	for _, c := range t.ix.GatewayClasses {
		switch string(c.Spec.ControllerName) {
		case model.WaypointController, model.GatewayController:
		default:
			continue
		}
		t.out.Status.GatewayClasses[c.Name] = []metav1.Condition{
			cond(string(gwv1.GatewayClassConditionStatusAccepted), true, string(gwv1.GatewayClassReasonAccepted), "Handled by "+string(c.Spec.ControllerName), c.Generation),
			cond(string(gwv1.GatewayClassConditionStatusSupportedVersion), true, string(gwv1.GatewayClassReasonSupportedVersion), "Gateway API CRDs v1.6 are supported", c.Generation),
		}
	}
}

// gateways validates the listeners of every Gateway of our classes.
func (t *translator) gateways() {
	t.listeners = map[string][]*listenerInfo{}
	for _, gw := range t.ix.Gateways {
		ctrl := t.controllerOf(gw.Spec.GatewayClassName)
		if ctrl == "" {
			continue
		}
		var ls []*listenerInfo
		for _, l := range gw.Spec.Listeners {
			li := &listenerInfo{l: l}
			switch {
			case ctrl == model.WaypointController:
				if l.Protocol != ProtocolHBONE || l.Port != model.HBONEPort {
					li.reason, li.problem = string(gwv1.ListenerReasonUnsupportedProtocol), fmt.Sprintf("waypoint listeners must be protocol HBONE on port %d", model.HBONEPort)
				}
			case l.Protocol == gwv1.HTTPProtocolType:
				li.kinds = []gwv1.RouteGroupKind{{Group: groupPtr(gwv1.GroupName), Kind: kindHTTPRoute}, {Group: groupPtr(gwv1.GroupName), Kind: kindGRPCRoute}}
			default:
				li.reason, li.problem = string(gwv1.ListenerReasonUnsupportedProtocol), fmt.Sprintf("protocol %s is not supported yet (HTTP only)", l.Protocol)
			}
			if li.problem == "" && l.AllowedRoutes != nil && len(l.AllowedRoutes.Kinds) > 0 {
				var keep []gwv1.RouteGroupKind
				for _, k := range l.AllowedRoutes.Kinds {
					if (k.Group == nil || string(*k.Group) == gwv1.GroupName) && (k.Kind == kindHTTPRoute || k.Kind == kindGRPCRoute) {
						keep = append(keep, gwv1.RouteGroupKind{Group: groupPtr(gwv1.GroupName), Kind: k.Kind})
					} else {
						li.reason, li.problem = string(gwv1.ListenerReasonInvalidRouteKinds), fmt.Sprintf("route kind %s is not supported", k.Kind)
					}
				}
				li.kinds = keep
			}
			ls = append(ls, li)
		}
		t.listeners[model.Key(gw.Namespace, gw.Name)] = ls
		if ctrl == model.WaypointController {
			t.out.Waypoints = append(t.out.Waypoints, Waypoint{Namespace: gw.Namespace, Name: gw.Name, For: model.WaypointFor(gw), Identity: t.identity(gw.Namespace, gw.Name)})
		}
	}
}

func groupPtr(g string) *gwv1.Group { x := gwv1.Group(g); return &x }

// gatewayParent attaches a route to a north-south Gateway listener.
func (t *translator) gatewayParent(r *routeInfo, p *parentInfo) {
	ns := r.ns
	if p.ref.Namespace != nil && *p.ref.Namespace != "" {
		ns = string(*p.ref.Namespace)
	}
	gw := t.ix.Gateway(ns, string(p.ref.Name))
	if gw == nil {
		return // unknown Gateway: we cannot tell whose it is
	}
	ctrl := t.controllerOf(gw.Spec.GatewayClassName)
	if ctrl == "" {
		return
	}
	p.status = t.parentStatus(r, p, ctrl, gatewayMode)
	if ctrl == model.WaypointController {
		setAccepted(p.status, false, string(gwv1.RouteReasonNotAllowedByListeners),
			fmt.Sprintf("waypoint Gateway %s does not take routes: attach the route to a Service (parentRef group \"\", kind Service) that uses this waypoint", model.Key(ns, gw.Name)), r.gen)
		return
	}
	var candidates []*listenerInfo
	for _, li := range t.listeners[model.Key(ns, gw.Name)] {
		if p.ref.SectionName != nil && string(*p.ref.SectionName) != string(li.l.Name) {
			continue
		}
		if p.ref.Port != nil && *p.ref.Port != li.l.Port {
			continue
		}
		candidates = append(candidates, li)
	}
	if len(candidates) == 0 {
		setAccepted(p.status, false, string(gwv1.RouteReasonNoMatchingParent), fmt.Sprintf("Gateway %s has no listener matching the parentRef's sectionName/port", model.Key(ns, gw.Name)), r.gen)
		return
	}
	var allowed []*listenerInfo
	for _, li := range candidates {
		if li.problem == "" && t.listenerAllows(li, gw, r) {
			allowed = append(allowed, li)
		}
	}
	if len(allowed) == 0 {
		setAccepted(p.status, false, string(gwv1.RouteReasonNotAllowedByListeners), fmt.Sprintf("no listener of Gateway %s allows %s from namespace %s", model.Key(ns, gw.Name), r.kind, r.ns), r.gen)
		return
	}
	var matched []*listenerInfo
	for _, li := range allowed {
		if hostnamesIntersect(li.l.Hostname, r.hostnames) {
			matched = append(matched, li)
		}
	}
	if len(matched) == 0 {
		setAccepted(p.status, false, string(gwv1.RouteReasonNoMatchingListenerHostname), fmt.Sprintf("no listener hostname of Gateway %s intersects the route's hostnames", model.Key(ns, gw.Name)), r.gen)
		return
	}
	if accepted(p.status) {
		for _, li := range matched {
			li.attached++
		}
	}
}

func (t *translator) listenerAllows(li *listenerInfo, gw *gwv1.Gateway, r *routeInfo) bool {
	kindOK := false
	for _, k := range li.kinds {
		if string(k.Kind) == r.kind {
			kindOK = true
		}
	}
	if !kindOK {
		return false
	}
	from := gwv1.NamespacesFromSame
	var selector *metav1.LabelSelector
	if ar := li.l.AllowedRoutes; ar != nil && ar.Namespaces != nil {
		if ar.Namespaces.From != nil {
			from = *ar.Namespaces.From
		}
		selector = ar.Namespaces.Selector
	}
	switch from {
	case gwv1.NamespacesFromAll:
		return true
	case gwv1.NamespacesFromSame:
		return r.ns == gw.Namespace
	case gwv1.NamespacesFromSelector:
		if selector == nil {
			return false
		}
		sel, err := metav1.LabelSelectorAsSelector(selector)
		if err != nil {
			return false
		}
		ns := t.ix.Namespace(r.ns)
		return ns != nil && sel.Matches(labels.Set(ns.Labels))
	}
	return false
}

// hostnamesIntersect applies the Gateway API hostname rules: no listener
// hostname or no route hostnames match everything; "*.x" matches names
// ending in ".x" (not "x" itself); two wildcards intersect when one's
// suffix contains the other's.
func hostnamesIntersect(listener *gwv1.Hostname, route []gwv1.Hostname) bool {
	if listener == nil || *listener == "" || len(route) == 0 {
		return true
	}
	l := string(*listener)
	for _, h := range route {
		if hostMatch(l, string(h)) || hostMatch(string(h), l) {
			return true
		}
	}
	return false
}

func hostMatch(pattern, host string) bool {
	if pattern == host {
		return true
	}
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		h := strings.TrimPrefix(host, "*")
		return strings.HasSuffix(h, suffix) && len(h) > len(suffix)
	}
	return false
}

// gatewayStatus writes Gateway status once routes have attached.
func (t *translator) gatewayStatus() {
	for _, gw := range t.ix.Gateways {
		ctrl := t.controllerOf(gw.Spec.GatewayClassName)
		if ctrl == "" {
			continue
		}
		gen := gw.Generation
		st := gwv1.GatewayStatus{}
		valid := 0
		for _, li := range t.listeners[model.Key(gw.Namespace, gw.Name)] {
			ls := gwv1.ListenerStatus{Name: li.l.Name, SupportedKinds: li.kinds, AttachedRoutes: li.attached}
			if ls.SupportedKinds == nil {
				ls.SupportedKinds = []gwv1.RouteGroupKind{}
			}
			if li.problem != "" {
				ls.Conditions = []metav1.Condition{
					cond(string(gwv1.ListenerConditionAccepted), false, li.reason, li.problem, gen),
					cond(string(gwv1.ListenerConditionProgrammed), false, string(gwv1.ListenerReasonInvalid), li.problem, gen),
					cond(string(gwv1.ListenerConditionResolvedRefs), li.reason != string(gwv1.ListenerReasonInvalidRouteKinds), reasonOr(li.reason == string(gwv1.ListenerReasonInvalidRouteKinds), li.reason, string(gwv1.ListenerReasonResolvedRefs)), li.problem, gen),
					cond(string(gwv1.ListenerConditionConflicted), false, string(gwv1.ListenerReasonNoConflicts), "No conflicts", gen),
				}
			} else {
				valid++
				ls.Conditions = []metav1.Condition{
					cond(string(gwv1.ListenerConditionAccepted), true, string(gwv1.ListenerReasonAccepted), "Listener accepted", gen),
					cond(string(gwv1.ListenerConditionProgrammed), true, string(gwv1.ListenerReasonProgrammed), "Listener programmed", gen),
					cond(string(gwv1.ListenerConditionResolvedRefs), true, string(gwv1.ListenerReasonResolvedRefs), "All references resolved", gen),
					cond(string(gwv1.ListenerConditionConflicted), false, string(gwv1.ListenerReasonNoConflicts), "No conflicts", gen),
				}
			}
			st.Listeners = append(st.Listeners, ls)
		}
		if valid == 0 {
			st.Conditions = append(st.Conditions, cond(string(gwv1.GatewayConditionAccepted), false, string(gwv1.GatewayReasonListenersNotValid), "no valid listener", gen))
		} else {
			st.Conditions = append(st.Conditions, cond(string(gwv1.GatewayConditionAccepted), true, string(gwv1.GatewayReasonAccepted), "Gateway accepted", gen))
		}
		if ctrl == model.WaypointController {
			ip := t.waypointIP(gw)
			if ip != "" {
				st.Addresses = []gwv1.GatewayStatusAddress{{Type: addrType(gwv1.IPAddressType), Value: ip}}
			}
			ready, why := t.waypointDeploymentReady(gw)
			switch {
			case valid == 0:
				st.Conditions = append(st.Conditions, cond(string(gwv1.GatewayConditionProgrammed), false, string(gwv1.GatewayReasonInvalid), "no valid listener", gen))
			case ip == "":
				st.Conditions = append(st.Conditions, cond(string(gwv1.GatewayConditionProgrammed), false, string(gwv1.GatewayReasonAddressNotAssigned), fmt.Sprintf("waypoint Service %s has no cluster IP yet", model.Key(gw.Namespace, gw.Name)), gen))
			case !ready:
				st.Conditions = append(st.Conditions, cond(string(gwv1.GatewayConditionProgrammed), false, string(gwv1.GatewayReasonPending), why, gen))
			default:
				st.Conditions = append(st.Conditions, cond(string(gwv1.GatewayConditionProgrammed), true, string(gwv1.GatewayReasonProgrammed), why, gen))
			}
		} else {
			st.Conditions = append(st.Conditions, cond(string(gwv1.GatewayConditionProgrammed), false, string(gwv1.GatewayReasonPending), "the north-south gateway data plane is not deployed by this version of Warren", gen))
		}
		t.out.Status.Gateways[model.Key(gw.Namespace, gw.Name)] = st
	}
}

func reasonOr(c bool, a, b string) string {
	if c {
		return a
	}
	return b
}

func addrType(t gwv1.AddressType) *gwv1.AddressType { return &t }

func (t *translator) waypointDeploymentReady(gw *gwv1.Gateway) (bool, string) {
	var d *appsv1.Deployment
	for _, x := range t.ix.WaypointDeployments {
		if x.Namespace == gw.Namespace && x.Name == gw.Name {
			d = x
		}
	}
	if d == nil {
		return false, fmt.Sprintf("waypoint Deployment %s not created yet", model.Key(gw.Namespace, gw.Name))
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
			return true, fmt.Sprintf("waypoint Deployment %s available (%d ready)", model.Key(gw.Namespace, gw.Name), d.Status.ReadyReplicas)
		}
	}
	return false, fmt.Sprintf("waypoint Deployment %s not available yet (%d/%d ready)", model.Key(gw.Namespace, gw.Name), d.Status.ReadyReplicas, d.Status.Replicas)
}
