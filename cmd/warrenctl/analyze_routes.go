package main

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// routeStatus reads the status translation gives every route parent
// (WA004–WA007, WA009, WA010): the same conditions istiod-lite writes.
func (a *analyzer) routeStatus() {
	st := a.m.out.Status
	for _, kind := range []string{"HTTPRoute", "GRPCRoute"} {
		statuses := st.HTTPRoutes
		if kind == "GRPCRoute" {
			statuses = st.GRPCRoutes
		}
		for _, key := range sortedKeys(statuses) {
			ns, name, _ := strings.Cut(key, "/")
			for _, ps := range statuses[key] {
				a.routeParent(kind, ns, name, ps)
			}
		}
	}
}

func parentRefString(ref gwv1.ParentReference, routeNS string) string {
	kind := "Gateway"
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	ns := routeNS
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	s := kind + " " + model.Key(ns, string(ref.Name))
	if ref.Port != nil {
		s += fmt.Sprintf(" port %d", *ref.Port)
	}
	if ref.SectionName != nil {
		s += " section " + string(*ref.SectionName)
	}
	return s
}

func findCondition(cs []metav1.Condition, t string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

func (a *analyzer) routeParent(kind, ns, name string, ps gwv1.RouteParentStatus) {
	parent := parentRefString(ps.ParentRef, ns)
	edit := fmt.Sprintf("kubectl -n %s edit %s %s", ns, strings.ToLower(kind), name)
	if c := findCondition(ps.Conditions, string(gwv1.RouteConditionAccepted)); c != nil {
		switch {
		case c.Status == metav1.ConditionFalse && c.Reason == "Conflicted":
			a.report(codeRouteKindConflict, kind, ns, name, fmt.Sprintf("on %s: %s", parent, c.Message),
				"bind HTTPRoutes and GRPCRoutes to different Service ports (or different Services)")
		case c.Status == metav1.ConditionFalse:
			a.report(codeRouteNotAccepted, kind, ns, name, fmt.Sprintf("not accepted by %s: %s: %s", parent, c.Reason, c.Message), fixForReason(c.Reason, edit))
		case strings.Contains(c.Message, "cannot share a port"):
			a.report(codeRouteKindConflict, kind, ns, name, fmt.Sprintf("on %s: %s", parent, c.Message),
				"bind HTTPRoutes and GRPCRoutes to different Service ports (or different Services)")
		}
	}
	if c := findCondition(ps.Conditions, string(gwv1.RouteConditionPartiallyInvalid)); c != nil && c.Status == metav1.ConditionTrue {
		a.report(codeRoutePartial, kind, ns, name, fmt.Sprintf("on %s: %s", parent, c.Message), "fix the rules named: "+edit)
	}
	if c := findCondition(ps.Conditions, string(gwv1.RouteConditionResolvedRefs)); c != nil && c.Status == metav1.ConditionFalse {
		if c.Reason == string(gwv1.RouteReasonRefNotPermitted) {
			a.report(codeBackendNotPermitted, kind, ns, name, fmt.Sprintf("on %s: %s", parent, c.Message),
				"create a ReferenceGrant in the backend's namespace allowing "+kind+" from namespace "+ns+" (kubectl explain referencegrant)")
		} else {
			a.report(codeBackendUnresolved, kind, ns, name, fmt.Sprintf("on %s: %s: %s", parent, c.Reason, c.Message),
				"point backendRefs at an existing Service (group \"\", kind Service) and port: "+edit)
		}
	}
	if c := findCondition(ps.Conditions, translate.WaypointBoundCondition); c != nil && c.Status == metav1.ConditionFalse {
		svcNS := ns
		if ps.ParentRef.Namespace != nil && *ps.ParentRef.Namespace != "" {
			svcNS = string(*ps.ParentRef.Namespace)
		}
		why, fix := "", fmt.Sprintf("give the Service a waypoint: warrenctl waypoint apply -n %s --enroll-namespace (or label the Service %s=<waypoint>)", svcNS, model.LabelUseWaypoint)
		if svc := a.m.ix.Service(svcNS, string(ps.ParentRef.Name)); svc != nil {
			b := a.m.ix.WaypointForService(svc)
			why = " (" + bindingWhy(b) + ")"
			if strings.HasSuffix(b.Source, "="+model.WaypointNone) {
				fix = fmt.Sprintf("the %s opts out with %s=%s: remove that label, or the route", strings.SplitN(b.Source, " label ", 2)[0], model.LabelUseWaypoint, model.WaypointNone)
			}
		}
		a.report(codeRouteNoWaypoint, kind, ns, name, fmt.Sprintf("binds %s, which no waypoint serves%s: the route does nothing", parent, why), fix)
	}
}

func fixForReason(reason, edit string) string {
	switch reason {
	case string(gwv1.RouteReasonNoMatchingParent):
		return "point parentRefs at an existing Service (group \"\", kind Service) and one of its ports: " + edit
	case string(gwv1.RouteReasonNotAllowedByListeners):
		return "allow the route's namespace and kind in the Gateway listener's allowedRoutes, or move the route"
	case string(gwv1.RouteReasonNoMatchingListenerHostname):
		return "make the route's hostnames intersect the listener's hostname"
	case string(gwv1.RouteReasonUnsupportedValue):
		return "fix the rules named in the message: " + edit
	}
	return edit
}

// shadowedRoutes finds table entries an earlier entry always wins over
// (WA008): identical or wider matches from other routes, or dead matches.
func (a *analyzer) shadowedRoutes() {
	for _, key := range sortedKeys(a.m.out.L7Services) {
		l7 := a.m.out.L7Services[key]
		for _, p := range l7.GetPorts() {
			a.shadowedIn(l7, p.GetPort(), "producer table", p.GetProducer())
			for _, cns := range sortedKeys(p.GetConsumers()) {
				a.shadowedIn(l7, p.GetPort(), "consumer table of namespace "+cns, p.GetConsumers()[cns])
			}
		}
	}
}

func (a *analyzer) shadowedIn(l7 *warrenv1.L7Service, port uint32, table string, t *warrenv1.RouteTable) {
	routes := t.GetRoutes()
	for j := 1; j < len(routes); j++ {
		for i := 0; i < j; i++ {
			if !matchCovers(routes[i].GetMatch(), routes[j].GetMatch()) {
				continue
			}
			sj, si := routes[j].GetSource(), routes[i].GetSource()
			why := "it matches every request this one would"
			if sj.GetKind() == si.GetKind() && sj.GetNamespace() == si.GetNamespace() && sj.GetName() == si.GetName() {
				why = "an earlier rule or match of the same route matches every request this one would"
			} else if describeMatch(routes[i].GetMatch()) == describeMatch(routes[j].GetMatch()) {
				why = "both routes match the same requests and the older (then alphabetically first) route wins"
			} else if pi, pj := routes[i].GetMatch().GetPath(), routes[j].GetMatch().GetPath(); pi.GetType() == warrenv1.MatchType_PREFIX && pj.GetType() == warrenv1.MatchType_PREFIX &&
				strings.TrimRight(pi.GetValue(), "/") == strings.TrimRight(pj.GetValue(), "/") {
				why = fmt.Sprintf("prefixes %s and %s match the same paths (a trailing / does not count), so the older (then alphabetically first) route wins", pi.GetValue(), pj.GetValue())
			}
			a.report(codeRouteShadowed, sj.GetKind(), sj.GetNamespace(), sj.GetName(),
				fmt.Sprintf("rule %d match %d {%s} on Service %s/%s port %d (%s) never matches: entry %d, %s {%s}, comes first: %s",
					sj.GetRuleIndex(), sj.GetMatchIndex(), describeMatch(routes[j].GetMatch()), l7.GetNamespace(), l7.GetName(), port, table,
					i, refString(si), describeMatch(routes[i].GetMatch()), why),
				"make the matches differ (a header or a longer path), or merge the routes; warrenctl x describe service "+l7.GetName()+" -n "+l7.GetNamespace()+" shows the table order")
			break
		}
	}
}

// matchCovers reports whether every request matching b also matches a.
// It is conservative: regular expressions cover only identical ones.
func matchCovers(a, b *warrenv1.RouteMatch) bool {
	if a.GetMethod() != "" && a.GetMethod() != b.GetMethod() {
		return false
	}
	if !pathCovers(a.GetPath(), b.GetPath()) {
		return false
	}
	if ga := a.GetGrpc(); ga != nil && (ga.GetService() != "" || ga.GetMethod() != "") {
		gb := b.GetGrpc()
		if gb == nil {
			return false
		}
		if ga.GetType() != gb.GetType() {
			return false
		}
		if ga.GetType() == warrenv1.MatchType_REGEX {
			if ga.GetService() != gb.GetService() || ga.GetMethod() != gb.GetMethod() {
				return false
			}
		} else if (ga.GetService() != "" && ga.GetService() != gb.GetService()) || (ga.GetMethod() != "" && ga.GetMethod() != gb.GetMethod()) {
			return false
		}
	}
	for _, h := range a.GetHeaders() {
		if !hasHeaderMatch(b.GetHeaders(), h) {
			return false
		}
	}
	for _, q := range a.GetQueryParams() {
		found := false
		for _, x := range b.GetQueryParams() {
			if x.GetName() == q.GetName() && x.GetType() == q.GetType() && x.GetValue() == q.GetValue() {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func hasHeaderMatch(hs []*warrenv1.HeaderMatch, h *warrenv1.HeaderMatch) bool {
	for _, x := range hs {
		if strings.EqualFold(x.GetName(), h.GetName()) && x.GetType() == h.GetType() && x.GetValue() == h.GetValue() {
			return true
		}
	}
	return false
}

func pathCovers(a, b *warrenv1.PathMatch) bool {
	if a == nil || (a.GetType() == warrenv1.MatchType_PREFIX && strings.TrimRight(a.GetValue(), "/") == "") {
		return true
	}
	if b == nil {
		return false
	}
	switch a.GetType() {
	case warrenv1.MatchType_EXACT:
		return b.GetType() == warrenv1.MatchType_EXACT && b.GetValue() == a.GetValue()
	case warrenv1.MatchType_PREFIX:
		switch b.GetType() {
		case warrenv1.MatchType_EXACT:
			return prefixMatches(a.GetValue(), b.GetValue())
		case warrenv1.MatchType_PREFIX:
			bv := strings.TrimRight(b.GetValue(), "/")
			return bv != "" && prefixMatches(a.GetValue(), bv)
		}
		return false
	}
	return b.GetType() == warrenv1.MatchType_REGEX && b.GetValue() == a.GetValue()
}
