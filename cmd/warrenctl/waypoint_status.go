package main

// The waypoint views of `waypoint list` and `waypoint status`, from a
// mesh view (pure).

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/xds"
)

type waypointInfo struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	For       string `json:"for"`
	Identity  string `json:"identity"`
	Address   string `json:"address,omitempty"`
	// Programmed and Accepted as istiod-lite sets them.
	Programmed conditionView   `json:"programmed"`
	Conditions []conditionView `json:"conditions,omitempty"`
	// Deployment is "ready/desired" replicas, "" when unknown.
	Deployment string `json:"deployment,omitempty"`
	// UsedBy lists the Services and pods bound to it and the label that
	// decided each.
	UsedBy []waypointUser `json:"usedBy,omitempty"`
	// Unserved lists labels naming it that it cannot serve.
	Unserved []waypointUser `json:"unserved,omitempty"`
	// Routes counts route table entries it holds.
	Routes int `json:"routes"`
	// Proxies are its connected xDS streams (live, when known).
	Proxies []string `json:"proxies,omitempty"`
}

type waypointUser struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	Why  string `json:"why"`
}

// waypointInfos describes the waypoints of namespace ns ("" = all),
// optionally only the one named.
func waypointInfos(m *mesh, ns, name string, syncz []xds.ProxyStatus) []waypointInfo {
	var out []waypointInfo
	for _, gw := range m.ix.Gateways {
		if string(gw.Spec.GatewayClassName) != model.WaypointClass || (ns != "" && gw.Namespace != ns) || (name != "" && gw.Name != name) {
			continue
		}
		out = append(out, waypointInfoOf(m, gw, syncz))
	}
	return out
}

func waypointInfoOf(m *mesh, gw *gwv1.Gateway, syncz []xds.ProxyStatus) waypointInfo {
	key := model.Key(gw.Namespace, gw.Name)
	wi := waypointInfo{Namespace: gw.Namespace, Name: gw.Name, For: model.WaypointFor(gw),
		Identity: "spiffe://" + m.ix.Config.TrustDomain + "/ns/" + gw.Namespace + "/sa/" + gw.Name}
	if svc := m.ix.Service(gw.Namespace, gw.Name); svc != nil {
		if ips := model.ServiceIPs(svc); len(ips) > 0 {
			wi.Address = fmt.Sprintf("%s:%d", ips[0], model.HBONEPort)
		}
	}
	conds := gw.Status.Conditions
	if st, ok := m.out.Status.Gateways[key]; ok {
		conds = st.Conditions
	}
	wi.Conditions = conditionsView(conds)
	wi.Programmed = conditionView{Type: string(gwv1.GatewayConditionProgrammed), Status: "Unknown"}
	for _, c := range wi.Conditions {
		if c.Type == string(gwv1.GatewayConditionProgrammed) {
			wi.Programmed = c
		}
	}
	if !m.live && len(m.snap.WaypointDeployments) == 0 {
		wi.Programmed = conditionView{Type: string(gwv1.GatewayConditionProgrammed), Status: "Unknown", Reason: "Offline", Message: "no waypoint Deployments in the directory"}
	}
	for _, d := range m.snap.WaypointDeployments {
		if d.Namespace == gw.Namespace && d.Labels[waypointDeploymentLabel] == gw.Name {
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			wi.Deployment = fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, want)
		}
	}
	for _, s := range m.ix.Services {
		b := m.ix.WaypointForService(s)
		switch {
		case b.Gateway == gw:
			wi.UsedBy = append(wi.UsedBy, waypointUser{Kind: "Service", Name: model.Key(s.Namespace, s.Name), Why: b.Source})
		case b.Problem != "" && namesWaypoint(m.ix, gw, s.Namespace, s.Labels):
			wi.Unserved = append(wi.Unserved, waypointUser{Kind: "Service", Name: model.Key(s.Namespace, s.Name), Why: b.Source + ": " + b.Problem})
		}
	}
	for _, p := range m.ix.Pods {
		b := m.ix.WaypointForWorkload(p)
		switch {
		case b.Gateway == gw:
			wi.UsedBy = append(wi.UsedBy, waypointUser{Kind: "Pod", Name: model.Key(p.Namespace, p.Name), Why: b.Source})
		case b.Problem != "" && namesWaypoint(m.ix, gw, p.Namespace, p.Labels):
			wi.Unserved = append(wi.Unserved, waypointUser{Kind: "Pod", Name: model.Key(p.Namespace, p.Name), Why: b.Source + ": " + b.Problem})
		}
	}
	for _, l7 := range m.out.L7Services {
		if l7.GetWaypoint() != key {
			continue
		}
		for _, p := range l7.GetPorts() {
			wi.Routes += len(p.GetProducer().GetRoutes())
			for _, c := range p.GetConsumers() {
				wi.Routes += len(c.GetRoutes())
			}
		}
	}
	for _, ps := range syncz {
		if n, err := xds.ParseNodeID(ps.Proxy); err == nil && n.Kind == xds.KindWaypoint && n.GatewayRef() == key {
			wi.Proxies = append(wi.Proxies, ps.Proxy)
		}
	}
	return wi
}

// namesWaypoint reports whether the use-waypoint label that decides for
// an object (its own, else its namespace's) names gw.
func namesWaypoint(ix *model.Index, gw *gwv1.Gateway, objNS string, objLabels map[string]string) bool {
	lbls := objLabels
	if _, ok := lbls[model.LabelUseWaypoint]; !ok {
		n := ix.Namespace(objNS)
		if n == nil {
			return false
		}
		lbls = n.Labels
	}
	gwNS := objNS
	if v := lbls[model.LabelUseWaypointNamespace]; v != "" {
		gwNS = v
	}
	return lbls[model.LabelUseWaypoint] == gw.Name && gwNS == gw.Namespace
}

func conditionShort(c conditionView) string {
	if c.Status == string(metav1.ConditionTrue) {
		return "True"
	}
	s := c.Status
	if c.Reason != "" {
		s += " (" + c.Reason + ")"
	}
	return s
}
