package translate

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/warren-mesh/warren/istiod-lite/model"
)

// Route kinds.
const (
	kindHTTPRoute = "HTTPRoute"
	kindGRPCRoute = "GRPCRoute"
)

// WaypointBoundCondition is Warren's condition on a Service-parented route
// saying whether a waypoint serves the Service (without one the route has
// no effect).
const WaypointBoundCondition = "warren.io/WaypointBound"

// routeInfo is one HTTPRoute or GRPCRoute, validated.
type routeInfo struct {
	kind      string
	ns, name  string
	gen       int64
	created   metav1.Time
	hostnames []gwv1.Hostname
	rules     []*ruleInfo
	parents   []*parentInfo
}

// parentInfo is one parentRef of a route and its outcome.
type parentInfo struct {
	ref    gwv1.ParentReference
	status *gwv1.RouteParentStatus
	// Mesh attachment (Service parent): the Service, the port (0 = every
	// port) and the consumer namespace ("" for a producer route).
	svc        *corev1.Service
	port       int32
	consumerNS string
	// conflicted lists ports where a route of the other kind won.
	conflicted []int32
	// attachedPorts counts ports where the route is in a table.
	attachedPorts int
}

func (r *routeInfo) key() string { return model.Key(r.ns, r.name) }

// older reports whether a takes precedence over b by the spec's tie-break:
// oldest creation time, then "<namespace>/<name>" alphabetically.
func older(a, b *routeInfo) bool {
	if !a.created.Equal(&b.created) {
		return a.created.Before(&b.created)
	}
	if a.key() != b.key() {
		return a.key() < b.key()
	}
	return a.kind < b.kind
}

// routes validates every route and resolves its parents.
func (t *translator) routes() {
	for _, hr := range t.ix.HTTPRoutes {
		r := &routeInfo{kind: kindHTTPRoute, ns: hr.Namespace, name: hr.Name, gen: hr.Generation, created: hr.CreationTimestamp, hostnames: hr.Spec.Hostnames}
		r.rules = t.httpRules(r, hr)
		t.resolveParents(r, hr.Spec.ParentRefs)
		t.routeList = append(t.routeList, r)
	}
	for _, gr := range t.ix.GRPCRoutes {
		r := &routeInfo{kind: kindGRPCRoute, ns: gr.Namespace, name: gr.Name, gen: gr.Generation, created: gr.CreationTimestamp, hostnames: gr.Spec.Hostnames}
		r.rules = t.grpcRules(r, gr)
		t.resolveParents(r, gr.Spec.ParentRefs)
		t.routeList = append(t.routeList, r)
	}
}

func (t *translator) resolveParents(r *routeInfo, refs []gwv1.ParentReference) {
	for _, ref := range refs {
		p := &parentInfo{ref: ref}
		group, kind := gwv1.GroupName, "Gateway"
		if ref.Group != nil {
			group = string(*ref.Group)
		}
		if ref.Kind != nil {
			kind = string(*ref.Kind)
		}
		switch {
		case group == "" && kind == "Service":
			t.serviceParent(r, p)
		case group == gwv1.GroupName && kind == "Gateway":
			t.gatewayParent(r, p)
		case group == "":
			// Core-group parents other than Service are the mesh's to refuse.
			p.status = t.parentStatus(r, p, model.MeshController, meshMode)
			setAccepted(p.status, false, string(gwv1.RouteReasonNoMatchingParent),
				fmt.Sprintf("parentRef kind %q is not supported: attach mesh routes to a Service", kind), r.gen)
		default:
			// Another implementation's parent kind: not ours to report on.
		}
		if p.status != nil {
			r.parents = append(r.parents, p)
		}
	}
}

// parentStatus starts the status of one parent: Accepted from the rules'
// validity, ResolvedRefs from the backends compiled for mode m, and
// PartiallyInvalid when some rules were dropped.
func (t *translator) parentStatus(r *routeInfo, p *parentInfo, controller string, m mode) *gwv1.RouteParentStatus {
	st := &gwv1.RouteParentStatus{ParentRef: p.ref, ControllerName: gwv1.GatewayController(controller)}
	var dropped, invalid problems
	var refs problems
	valid := 0
	for _, ri := range r.rules {
		if ri.dropped != "" {
			dropped.add(string(gwv1.RouteReasonUnsupportedValue), "%s", ri.dropped)
			continue
		}
		valid++
		if ri.fail500 != "" {
			invalid.add(string(gwv1.RouteReasonUnsupportedValue), "%s", ri.fail500)
		}
		c := ri.compiled(m)
		for _, msg := range c.refs.msgs {
			refs.add(c.refs.reason, "%s", msg)
		}
	}
	switch {
	case len(r.rules) > 0 && valid == 0:
		st.Conditions = append(st.Conditions, cond(string(gwv1.RouteConditionAccepted), false, string(gwv1.RouteReasonUnsupportedValue), "no valid rule: "+dropped.message(), r.gen))
	default:
		st.Conditions = append(st.Conditions, cond(string(gwv1.RouteConditionAccepted), true, string(gwv1.RouteReasonAccepted), "Route accepted", r.gen))
	}
	if refs.empty() {
		st.Conditions = append(st.Conditions, cond(string(gwv1.RouteConditionResolvedRefs), true, string(gwv1.RouteReasonResolvedRefs), "All references resolved", r.gen))
	} else {
		st.Conditions = append(st.Conditions, cond(string(gwv1.RouteConditionResolvedRefs), false, refs.reason, refs.message(), r.gen))
	}
	if valid > 0 && (!dropped.empty() || !invalid.empty()) {
		all := problems{}
		for _, m := range append(dropped.msgs, invalid.msgs...) {
			all.add("", "%s", m)
		}
		st.Conditions = append(st.Conditions, cond(string(gwv1.RouteConditionPartiallyInvalid), true, string(gwv1.RouteReasonUnsupportedValue), all.message(), r.gen))
	}
	return st
}

// setAccepted overrides the Accepted condition (parent-level problems win
// over rule-level ones).
func setAccepted(st *gwv1.RouteParentStatus, ok bool, reason, msg string, gen int64) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == string(gwv1.RouteConditionAccepted) {
			st.Conditions[i] = cond(string(gwv1.RouteConditionAccepted), ok, reason, msg, gen)
			return
		}
	}
	st.Conditions = append([]metav1.Condition{cond(string(gwv1.RouteConditionAccepted), ok, reason, msg, gen)}, st.Conditions...)
}

func accepted(st *gwv1.RouteParentStatus) bool {
	for _, c := range st.Conditions {
		if c.Type == string(gwv1.RouteConditionAccepted) {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

// serviceParent binds a route to a Service frontend (GAMMA, GEP-1294).
// Hostnames play no part; parentRef.port narrows to one port; a route in
// another namespace than the Service is a consumer route.
func (t *translator) serviceParent(r *routeInfo, p *parentInfo) {
	p.status = t.parentStatus(r, p, model.MeshController, meshMode)
	ns := r.ns
	if p.ref.Namespace != nil && *p.ref.Namespace != "" {
		ns = string(*p.ref.Namespace)
	}
	svc := t.ix.Service(ns, string(p.ref.Name))
	if svc == nil {
		setAccepted(p.status, false, string(gwv1.RouteReasonNoMatchingParent), fmt.Sprintf("Service %s not found", model.Key(ns, string(p.ref.Name))), r.gen)
		return
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		setAccepted(p.status, false, string(gwv1.RouteReasonNoMatchingParent), fmt.Sprintf("Service %s is of type ExternalName and has no frontend to route", model.Key(ns, svc.Name)), r.gen)
		return
	}
	if p.ref.Port != nil {
		if !servicePort(svc, int32(*p.ref.Port)) {
			setAccepted(p.status, false, string(gwv1.RouteReasonNoMatchingParent), fmt.Sprintf("Service %s has no port %d", model.Key(ns, svc.Name), *p.ref.Port), r.gen)
			return
		}
		p.port = int32(*p.ref.Port)
	}
	if p.ref.SectionName != nil {
		found := false
		for _, sp := range svc.Spec.Ports {
			if sp.Name == string(*p.ref.SectionName) && (p.port == 0 || p.port == sp.Port) {
				p.port, found = sp.Port, true
			}
		}
		if !found {
			setAccepted(p.status, false, string(gwv1.RouteReasonNoMatchingParent), fmt.Sprintf("Service %s has no port named %q", model.Key(ns, svc.Name), *p.ref.SectionName), r.gen)
			return
		}
	}
	p.svc = svc
	if ns != r.ns {
		p.consumerNS = r.ns
	}
	if !accepted(p.status) {
		return
	}
	b := t.ix.WaypointForService(svc)
	switch {
	case b.Gateway == nil && b.Problem != "":
		p.status.Conditions = append(p.status.Conditions, cond(WaypointBoundCondition, false, "NoWaypoint",
			fmt.Sprintf("Service %s: %s: %s; the route has no effect until a waypoint serves the Service", model.Key(ns, svc.Name), b.Source, b.Problem), r.gen))
	case b.Gateway == nil:
		p.status.Conditions = append(p.status.Conditions, cond(WaypointBoundCondition, false, "NoWaypoint",
			fmt.Sprintf("no waypoint serves Service %s (%s); the route has no effect until one does: label the Service or namespace %s=<waypoint>", model.Key(ns, svc.Name), b.Source, model.LabelUseWaypoint), r.gen))
	default:
		p.status.Conditions = append(p.status.Conditions, cond(WaypointBoundCondition, true, "WaypointBound",
			fmt.Sprintf("waypoint %s serves Service %s (%s)", model.Key(b.Gateway.Namespace, b.Gateway.Name), model.Key(ns, svc.Name), b.Source), r.gen))
	}
}

// finishRouteStatus records parent statuses in the output.
func (t *translator) finishRouteStatus() {
	for _, r := range t.routeList {
		var out []gwv1.RouteParentStatus
		for _, p := range r.parents {
			if len(p.conflicted) > 0 {
				ports := make([]string, len(p.conflicted))
				for i, port := range p.conflicted {
					ports[i] = fmt.Sprint(port)
				}
				other := kindGRPCRoute
				if r.kind == kindGRPCRoute {
					other = kindHTTPRoute
				}
				msg := fmt.Sprintf("an older %s already binds Service %s port(s) %s; HTTPRoute and GRPCRoute cannot share a port", other, model.Key(p.svc.Namespace, p.svc.Name), strings.Join(ports, ","))
				if p.attachedPorts == 0 {
					setAccepted(p.status, false, "Conflicted", msg, r.gen)
				} else {
					setAccepted(p.status, true, string(gwv1.RouteReasonAccepted), "Route accepted on other ports; "+msg, r.gen)
				}
			}
			out = append(out, *p.status)
		}
		if len(out) == 0 {
			continue
		}
		if r.kind == kindHTTPRoute {
			t.out.Status.HTTPRoutes[r.key()] = out
		} else {
			t.out.Status.GRPCRoutes[r.key()] = out
		}
	}
}
