package main

// describe builds the description of a pod or a Service from a mesh view:
// identity, enrolment, waypoint and the label that decided, the routes
// that apply with their status and their entries in the waypoint's
// tables, policies and endpoints. Pure: no I/O.

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	secv1 "github.com/warren-mesh/warren/istiod-lite/api/security/v1alpha1"
	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/model"
)

func describePod(m *mesh, ns, name string) (*podDescription, error) {
	p := podByName(m.ix, ns, name)
	if p == nil {
		return nil, fmt.Errorf("pod %s/%s not found in %s", ns, name, m.source)
	}
	d := &podDescription{Kind: "Pod", Namespace: ns, Name: name, Node: p.Spec.NodeName, Phase: string(p.Status.Phase),
		ServiceAccount: p.Spec.ServiceAccountName}
	if d.ServiceAccount == "" {
		d.ServiceAccount = "default"
	}
	d.Identity = "spiffe://" + m.ix.Config.TrustDomain + "/ns/" + ns + "/sa/" + d.ServiceAccount
	for _, ip := range model.PodIPs(p) {
		d.IPs = append(d.IPs, ip.String())
	}
	if n := m.ix.Node(p.Spec.NodeName); n != nil {
		d.Zone = n.Labels[corev1.LabelTopologyZone]
	}
	w := m.out.Workloads[model.Key(ns, name)]
	d.Ready = w.GetReady()
	d.Enrolled, d.EnrolledWhy = m.ix.Enrolled(p)
	d.MTLSMode, d.MTLSWhy = mtlsOf(m.ix, p)
	d.Waypoint = waypointOf(m, m.ix.WaypointForWorkload(p))
	if w == nil {
		d.Diagnostics = append(d.Diagnostics, "not a mesh workload: "+notWorkloadWhy(p))
	}
	for _, svc := range m.ix.ServicesSelecting(p) {
		key := serviceResourceKey(m, svc)
		sv := podServiceView{Service: model.Key(svc.Namespace, svc.Name)}
		for _, pm := range w.GetServices()[key].GetPorts() {
			sv.Ports = append(sv.Ports, fmt.Sprintf("%d→%d", pm.GetServicePort(), pm.GetTargetPort()))
		}
		if wp := m.out.Services[key].GetWaypoint(); wp != nil {
			sv.Waypoint = wp.GetGateway()
		}
		d.Services = append(d.Services, sv)
		d.InboundRoutes = append(d.InboundRoutes, routesForService(m, svc)...)
	}
	d.OutboundRoutes = consumerRoutes(m, ns)
	d.Policies = policyViews(m, w.GetAuthorizationPolicies())
	d.Diagnostics = append(d.Diagnostics, diagnosticsFor(m, "Pod", ns, name)...)
	return d, nil
}

func describeService(m *mesh, ns, name string) (*serviceDescription, error) {
	svc := m.ix.Service(ns, name)
	if svc == nil {
		return nil, fmt.Errorf("service %s/%s not found in %s", ns, name, m.source)
	}
	key := serviceResourceKey(m, svc)
	d := &serviceDescription{Kind: "Service", Namespace: ns, Name: name, Hostname: m.ix.Hostname(svc), Type: string(svc.Spec.Type)}
	if d.Type == "" {
		d.Type = string(corev1.ServiceTypeClusterIP)
	}
	for _, ip := range model.ServiceIPs(svc) {
		d.Addresses = append(d.Addresses, ip.String())
	}
	l7 := m.out.L7Services[key]
	for _, sp := range svc.Spec.Ports {
		pv := servicePortView{Name: sp.Name, Port: sp.Port, TargetPort: sp.TargetPort.String(), Protocol: string(sp.Protocol)}
		if pv.Protocol == "" {
			pv.Protocol = "TCP"
		}
		if pv.TargetPort == "0" || pv.TargetPort == "" {
			pv.TargetPort = fmt.Sprint(sp.Port)
		}
		if sp.AppProtocol != nil {
			pv.AppProtocol = *sp.AppProtocol
		}
		for _, lp := range l7.GetPorts() {
			if lp.GetPort() == uint32(sp.Port) {
				pv.L7 = protocolShort(lp.GetProtocol())
			}
		}
		d.Ports = append(d.Ports, pv)
	}
	d.Waypoint = waypointOf(m, m.ix.WaypointForService(svc))
	d.Routes = routesForService(m, svc)
	var names []string
	names = append(names, l7.GetAuthorizationPolicies()...)
	for _, p := range m.ix.SelectedPods(svc) {
		names = append(names, m.out.Workloads[model.Key(p.Namespace, p.Name)].GetAuthorizationPolicies()...)
	}
	slices.Sort(names)
	d.Policies = policyViews(m, slices.Compact(names))
	if tp := m.out.Services[key].GetTrafficPolicy(); tp != nil {
		d.TrafficPolicy = tp.GetSource()
	}
	for _, p := range m.ix.SelectedPods(svc) {
		w := m.out.Workloads[model.Key(p.Namespace, p.Name)]
		ev := endpointView{Pod: model.Key(p.Namespace, p.Name), Address: dash(first(w.GetAddresses())), Node: p.Spec.NodeName,
			Ready: w.GetReady(), Mesh: w.GetTunnel() == warrenv1.TunnelProtocol_TUNNEL_HBONE, Identity: dash(w.GetIdentity())}
		var ports []string
		for _, pm := range w.GetServices()[key].GetPorts() {
			ports = append(ports, fmt.Sprintf("%d→%d", pm.GetServicePort(), pm.GetTargetPort()))
		}
		ev.Ports = dash(strings.Join(ports, ","))
		if w == nil {
			ev.Ports = "not a workload: " + notWorkloadWhy(p)
		}
		d.Endpoints = append(d.Endpoints, ev)
	}
	d.Diagnostics = diagnosticsFor(m, "Service", ns, name)
	return d, nil
}

// serviceResourceKey is the xDS resource name of a Service.
func serviceResourceKey(m *mesh, svc *corev1.Service) string {
	return svc.Namespace + "/" + m.ix.Hostname(svc)
}

func notWorkloadWhy(p *corev1.Pod) string {
	switch {
	case p.Spec.HostNetwork:
		return "it uses the host network"
	case len(model.PodIPs(p)) == 0:
		return "it has no IP yet"
	case p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
		return "it has terminated (" + string(p.Status.Phase) + ")"
	}
	return "unknown"
}

func mtlsOf(ix *model.Index, p *corev1.Pod) (string, string) {
	mode := model.MTLSPermissive
	if ix.MTLSStrict(p) {
		mode = model.MTLSStrict
	}
	if v, ok := p.Labels[model.LabelMTLSMode]; ok {
		return mode, fmt.Sprintf("pod label %s=%s", model.LabelMTLSMode, v)
	}
	if ns := ix.Namespace(p.Namespace); ns != nil {
		if v, ok := ns.Labels[model.LabelMTLSMode]; ok {
			return mode, fmt.Sprintf("namespace %s label %s=%s", p.Namespace, model.LabelMTLSMode, v)
		}
	}
	return mode, "no " + model.LabelMTLSMode + " label: the default"
}

// waypointOf renders a binding with the waypoint's address and readiness.
func waypointOf(m *mesh, b model.WaypointBinding) waypointView {
	v := waypointView{Why: b.Source, Problem: b.Problem}
	if b.Gateway == nil {
		return v
	}
	v.Gateway = model.Key(b.Gateway.Namespace, b.Gateway.Name)
	if svc := m.ix.Service(b.Gateway.Namespace, b.Gateway.Name); svc != nil {
		if ips := model.ServiceIPs(svc); len(ips) > 0 {
			v.Address = ips[0].String()
		}
	}
	// Offline without waypoint Deployments the readiness is unknowable.
	if m.live || len(m.snap.WaypointDeployments) > 0 {
		v.Ready = gatewayProgrammed(m, b.Gateway)
	}
	return v
}

// gatewayProgrammed renders the Programmed condition istiod-lite gives
// the Gateway ("True", or "False: reason: message").
func gatewayProgrammed(m *mesh, gw *gwv1.Gateway) string {
	st, ok := m.out.Status.Gateways[model.Key(gw.Namespace, gw.Name)]
	if !ok {
		return "unknown"
	}
	for _, c := range st.Conditions {
		if c.Type == string(gwv1.GatewayConditionProgrammed) {
			if c.Status == metav1.ConditionTrue {
				return "True"
			}
			return fmt.Sprintf("%s: %s: %s", c.Status, c.Reason, c.Message)
		}
	}
	return "unknown"
}

func conditionsView(cs []metav1.Condition) []conditionView {
	var out []conditionView
	for _, c := range cs {
		out = append(out, conditionView{Type: c.Type, Status: string(c.Status), Reason: c.Reason, Message: c.Message})
	}
	return out
}

// routesForService lists the routes bound to svc, with the status of that
// parent and their entries in the waypoint's tables.
func routesForService(m *mesh, svc *corev1.Service) []routeView {
	var out []routeView
	l7 := m.out.L7Services[serviceResourceKey(m, svc)]
	collect := func(kind string, statuses map[string][]gwv1.RouteParentStatus) {
		for _, key := range sortedKeys(statuses) {
			for _, ps := range statuses[key] {
				if !isServiceRef(ps.ParentRef, key, svc.Namespace, svc.Name) {
					continue
				}
				rns, rname, _ := strings.Cut(key, "/")
				rv := routeView{Kind: kind, Namespace: rns, Name: rname, Parent: parentString(ps.ParentRef, svc), Role: "producer",
					Conditions: conditionsView(ps.Conditions)}
				if rns != svc.Namespace {
					rv.Role = "consumer (clients in namespace " + rns + ")"
				}
				rv.Entries = routeEntries(l7, kind, rns, rname)
				out = append(out, rv)
			}
		}
	}
	collect("HTTPRoute", m.out.Status.HTTPRoutes)
	collect("GRPCRoute", m.out.Status.GRPCRoutes)
	return out
}

func parentString(ref gwv1.ParentReference, svc *corev1.Service) string {
	s := "Service " + model.Key(svc.Namespace, svc.Name)
	switch {
	case ref.Port != nil:
		s += fmt.Sprintf(" port %d", *ref.Port)
	case ref.SectionName != nil:
		s += " port " + string(*ref.SectionName)
	default:
		s += " (all ports)"
	}
	return s
}

// consumerRoutes lists routes of namespace ns bound to Services of other
// namespaces: they apply to requests from ns's pods.
func consumerRoutes(m *mesh, ns string) []routeView {
	var out []routeView
	for _, svc := range m.ix.Services {
		if svc.Namespace == ns {
			continue
		}
		for _, r := range routesForService(m, svc) {
			if r.Namespace == ns {
				out = append(out, r)
			}
		}
	}
	return out
}

// routeEntries finds a route's entries in the waypoint tables of l7.
func routeEntries(l7 *warrenv1.L7Service, kind, ns, name string) []routeEntryView {
	var out []routeEntryView
	add := func(table string, port uint32, t *warrenv1.RouteTable) {
		for i, r := range t.GetRoutes() {
			src := r.GetSource()
			if src.GetKind() != kind || src.GetNamespace() != ns || src.GetName() != name {
				continue
			}
			rule := fmt.Sprintf("rule %d match %d", src.GetRuleIndex(), src.GetMatchIndex())
			if src.GetRuleName() != "" {
				rule = fmt.Sprintf("rule %d (%s) match %d", src.GetRuleIndex(), src.GetRuleName(), src.GetMatchIndex())
			}
			out = append(out, routeEntryView{Table: table, Port: port, Index: i, Rule: rule, Match: describeMatch(r.GetMatch()),
				Backends: backendStrings(r.GetBackends()), Filters: filterStrings(r.GetFilters())})
		}
	}
	for _, p := range l7.GetPorts() {
		add("producer", p.GetPort(), p.GetProducer())
		for _, cns := range sortedKeys(p.GetConsumers()) {
			add("consumer "+cns, p.GetPort(), p.GetConsumers()[cns])
		}
	}
	return out
}

// shortService renders "<ns>/<name>.<ns>.svc.<domain>" as "<name>.<ns>".
func shortService(key string) string {
	_, host, ok := strings.Cut(key, "/")
	if !ok {
		return key
	}
	if i := strings.Index(host, ".svc."); i >= 0 {
		return host[:i]
	}
	return host
}

func backendStrings(bs []*warrenv1.Backend) []string {
	var total uint64
	for _, b := range bs {
		total += uint64(b.GetWeight())
	}
	var out []string
	for _, b := range bs {
		s := fmt.Sprintf("%s:%d", shortService(b.GetService()), b.GetPort())
		if b.GetInvalid() != "" {
			s = "INVALID (" + b.GetInvalid() + ")"
		}
		if len(bs) > 1 && total > 0 {
			s += " " + percent(100*float64(b.GetWeight())/float64(total))
		}
		out = append(out, s)
	}
	return out
}

func filterStrings(fs []*warrenv1.Filter) []string {
	var out []string
	for _, f := range fs {
		switch k := f.GetKind().(type) {
		case *warrenv1.Filter_RequestHeaderModifier:
			out = append(out, "request headers: "+headerChanges(k.RequestHeaderModifier))
		case *warrenv1.Filter_ResponseHeaderModifier:
			out = append(out, "response headers: "+headerChanges(k.ResponseHeaderModifier))
		case *warrenv1.Filter_RequestRedirect:
			out = append(out, fmt.Sprintf("redirect %d", k.RequestRedirect.GetStatusCode()))
		case *warrenv1.Filter_UrlRewrite:
			out = append(out, "URL rewrite")
		case *warrenv1.Filter_RequestMirror:
			out = append(out, fmt.Sprintf("mirror to %s:%d", shortService(k.RequestMirror.GetBackend().GetService()), k.RequestMirror.GetBackend().GetPort()))
		case *warrenv1.Filter_Cors:
			out = append(out, "CORS")
		}
	}
	return out
}

// policyViews describes policies by name, from the objects and the
// status translation gives them.
func policyViews(m *mesh, names []string) []policyView {
	var out []policyView
	for _, n := range names {
		ns, name, _ := strings.Cut(n, "/")
		pv := policyView{Name: n, Action: "?", Target: "?"}
		if ap := authzPolicy(m, ns, name); ap != nil {
			pv.Action = string(ap.Spec.Action)
			if pv.Action == "" {
				pv.Action = string(secv1.ActionAllow)
			}
			pv.Rules = len(ap.Spec.Rules)
			pv.Target = targetsString(ap)
		}
		if a := m.out.Authorizations[n]; a != nil {
			pv.L7 = a.GetL7()
		}
		pv.Conditions = conditionsView(m.out.Status.AuthorizationPolicies[n])
		out = append(out, pv)
	}
	return out
}

func authzPolicy(m *mesh, ns, name string) *secv1.AuthorizationPolicy {
	for _, ap := range m.ix.AuthorizationPolicies {
		if ap.Namespace == ns && ap.Name == name {
			return ap
		}
	}
	return nil
}

func targetsString(ap *secv1.AuthorizationPolicy) string {
	if len(ap.Spec.TargetRefs) == 0 {
		return "Namespace " + ap.Namespace
	}
	var ts []string
	for _, t := range ap.Spec.TargetRefs {
		ts = append(ts, t.Kind+" "+t.Name)
	}
	return strings.Join(ts, ", ")
}

func diagnosticsFor(m *mesh, kind, ns, name string) []string {
	var out []string
	for _, d := range m.out.Diagnostics {
		if d.Kind == kind && d.Namespace == ns && d.Name == name {
			out = append(out, d.Message)
		}
	}
	return out
}

func protocolShort(p warrenv1.Protocol) string {
	if p == warrenv1.Protocol_PROTOCOL_UNSPECIFIED {
		return "detect"
	}
	return p.String()
}
