package main

import (
	"fmt"
	"strings"

	"github.com/warren-mesh/warren/istiod-lite/model"
)

// waypointLabels checks every use-waypoint label (WA001, WA002) on
// Namespaces, Services and Pods.
func (a *analyzer) waypointLabels() {
	ix := a.m.ix
	check := func(kind, ns, name, objNS string, lbls map[string]string, t model.TrafficType, isNamespace bool) {
		wp, ok := lbls[model.LabelUseWaypoint]
		if !ok || wp == "" || wp == model.WaypointNone {
			return
		}
		gwNS := objNS
		if v := lbls[model.LabelUseWaypointNamespace]; v != "" {
			gwNS = v
		}
		label := fmt.Sprintf("label %s=%s", model.LabelUseWaypoint, wp)
		gw := ix.Gateway(gwNS, wp)
		switch {
		case gw == nil:
			a.report(codeWaypointMissing, kind, ns, name,
				fmt.Sprintf("%s names waypoint Gateway %s, which does not exist: traffic it covers skips L7 routing and policy", label, model.Key(gwNS, wp)),
				fmt.Sprintf("create it: warrenctl waypoint apply %s -n %s, or remove the label", wp, gwNS))
		case string(gw.Spec.GatewayClassName) != model.WaypointClass:
			a.report(codeWaypointUnusable, kind, ns, name,
				fmt.Sprintf("%s names Gateway %s of class %q, not %q: it is not a waypoint", label, model.Key(gwNS, wp), gw.Spec.GatewayClassName, model.WaypointClass),
				fmt.Sprintf("name a Gateway of class %s (warrenctl waypoint generate), or remove the label", model.WaypointClass))
		case !isNamespace && !model.WaypointServes(gw, t):
			a.report(codeWaypointUnusable, kind, ns, name,
				fmt.Sprintf("%s names waypoint %s, which has %s=%s and does not serve %s traffic: no waypoint is used", label, model.Key(gwNS, wp), model.LabelWaypointFor, model.WaypointFor(gw), t),
				fmt.Sprintf("label the Gateway %s=%s (or %s), or remove the label", model.LabelWaypointFor, t, model.WaypointForAll))
		case isNamespace && model.WaypointFor(gw) == model.WaypointForNone:
			a.report(codeWaypointUnusable, kind, ns, name,
				fmt.Sprintf("%s names waypoint %s, which has %s=none and serves no traffic", label, model.Key(gwNS, wp), model.LabelWaypointFor),
				fmt.Sprintf("label the Gateway %s=%s, or remove the namespace label", model.LabelWaypointFor, model.WaypointForService))
		}
	}
	for _, n := range ix.Namespaces {
		check("Namespace", n.Name, n.Name, n.Name, n.Labels, model.ServiceTraffic, true)
	}
	for _, s := range ix.Services {
		if ix.IsWaypointService(s) {
			continue
		}
		check("Service", s.Namespace, s.Name, s.Namespace, s.Labels, model.ServiceTraffic, false)
	}
	for _, p := range ix.Pods {
		check("Pod", p.Namespace, p.Name, p.Namespace, p.Labels, model.WorkloadTraffic, false)
	}
}

// waypointReadiness reports waypoints in use that are not Programmed
// (WA003). Offline it needs the waypoint Deployments in the directory.
func (a *analyzer) waypointReadiness() {
	m := a.m
	if !m.live && len(m.snap.WaypointDeployments) == 0 {
		return
	}
	users := waypointUsers(m)
	for _, gw := range m.ix.Gateways {
		key := model.Key(gw.Namespace, gw.Name)
		if string(gw.Spec.GatewayClassName) != model.WaypointClass || len(users[key]) == 0 {
			continue
		}
		if ready := gatewayProgrammed(m, gw); ready != "True" {
			a.report(codeWaypointNotReady, "Gateway", gw.Namespace, gw.Name,
				fmt.Sprintf("waypoint is not ready (Programmed=%s) and %d object(s) use it (%s): their traffic fails", ready, len(users[key]), firstN(users[key], 3)),
				fmt.Sprintf("kubectl -n %s get deployment %s; kubectl -n %s describe pods -l %s=%s", gw.Namespace, gw.Name, gw.Namespace, waypointDeploymentLabel, gw.Name))
		}
	}
}

// waypointUsers maps each waypoint ("ns/name") to the Services and pods
// bound to it.
func waypointUsers(m *mesh) map[string][]string {
	out := map[string][]string{}
	for _, s := range m.ix.Services {
		if b := m.ix.WaypointForService(s); b.Gateway != nil {
			k := model.Key(b.Gateway.Namespace, b.Gateway.Name)
			out[k] = append(out[k], "service "+model.Key(s.Namespace, s.Name))
		}
	}
	for _, p := range m.ix.Pods {
		if b := m.ix.WaypointForWorkload(p); b.Gateway != nil {
			k := model.Key(b.Gateway.Namespace, b.Gateway.Name)
			out[k] = append(out[k], "pod "+model.Key(p.Namespace, p.Name))
		}
	}
	return out
}

func firstN(s []string, n int) string {
	if len(s) <= n {
		return joinComma(s)
	}
	return joinComma(s[:n]) + fmt.Sprintf(" and %d more", len(s)-n)
}

func joinComma(s []string) string { return strings.Join(s, ", ") }
