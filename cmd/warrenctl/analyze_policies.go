package main

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	secv1 "github.com/warren-mesh/warren/istiod-lite/api/security/v1alpha1"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// policies checks AuthorizationPolicies (WA015–WA018): status from
// translation, then who actually enforces each accepted one.
func (a *analyzer) policies() {
	ix := a.m.ix
	users := waypointUsers(a.m)
	for _, ap := range ix.AuthorizationPolicies {
		key := model.Key(ap.Namespace, ap.Name)
		acc := findCondition(a.m.out.Status.AuthorizationPolicies[key], translate.PolicyAccepted)
		edit := fmt.Sprintf("kubectl -n %s edit authorizationpolicies.security.warren.io %s", ap.Namespace, ap.Name)
		if acc == nil {
			continue
		}
		if acc.Status == metav1.ConditionFalse {
			if acc.Reason == translate.ReasonTargetNotFound {
				a.report(codePolicyTargetNotFound, "AuthorizationPolicy", ap.Namespace, ap.Name, acc.Message+": the policy is not enforced anywhere",
					"point targetRefs at an existing Service or waypoint Gateway in namespace "+ap.Namespace+", or the namespace itself: "+edit)
			} else {
				a.report(codePolicyInvalid, "AuthorizationPolicy", ap.Namespace, ap.Name, acc.Reason+": "+acc.Message, "fix the field named: "+edit)
			}
			continue
		}
		if strings.Contains(acc.Message, "not found") {
			a.report(codePolicyTargetNotFound, "AuthorizationPolicy", ap.Namespace, ap.Name, "some targets are ignored: "+strings.TrimPrefix(acc.Message, "Policy accepted; ignored: "),
				"remove or fix the missing targetRefs: "+edit)
		}
		ztunnel, waypoint, why := a.enforcers(ap, users)
		l7 := a.m.out.Authorizations[key].GetL7()
		switch {
		case !ztunnel && !waypoint:
			a.report(codePolicyNotEnforced, "AuthorizationPolicy", ap.Namespace, ap.Name, "no proxy enforces it: "+why,
				fmt.Sprintf("enrol the target's workloads (%s=%s) or give it a waypoint (warrenctl waypoint apply -n %s --enroll-namespace)", model.LabelDataplaneMode, model.DataplaneAmbient, ap.Namespace))
		case l7 && !waypoint:
			a.report(codePolicyL7NoWaypoint, "AuthorizationPolicy", ap.Namespace, ap.Name,
				"its rules have method/path/header conditions but only ztunnel enforces it (L4): ALLOW rules with them never match and DENY rules match on their other conditions alone",
				fmt.Sprintf("target a Service served by a waypoint, or the waypoint Gateway itself (warrenctl waypoint apply -n %s)", ap.Namespace))
		case l7 && ztunnel:
			a.report(codePolicyL7AtZtunnel, "AuthorizationPolicy", ap.Namespace, ap.Name, a.l7AtZtunnelMessage(key),
				"drop the Namespace target and keep the waypoint Gateway (or Service) targets, so only the waypoint enforces it, or give each L7 rule L4 conditions (from, ports) that keep it from matching everything")
		}
	}
}

// l7AtZtunnelMessage says what ztunnel makes of an L7 policy.
func (a *analyzer) l7AtZtunnelMessage(key string) string {
	res := a.m.out.Authorizations[key]
	var pods []string
	for _, k := range sortedKeys(a.m.out.Workloads) {
		for _, n := range a.m.out.Workloads[k].GetAuthorizationPolicies() {
			if n == key {
				pods = append(pods, k)
			}
		}
	}
	effect := "its ALLOW rules with method/path/header conditions never match there, so connections they should allow — including the waypoint's — are refused"
	if res.GetAction().String() == "DENY" {
		effect = "there its rules lose their method/path/header conditions, so a rule left without source or port conditions matches — and refuses — every connection, including the waypoint's"
	}
	return fmt.Sprintf("ztunnel enforces it on %d workload(s) (%s) as well as the waypoint: %s", len(pods), firstN(pods, 3), effect)
}

// enforcers says whether ztunnel and/or a waypoint enforce ap, and why
// neither does when so.
func (a *analyzer) enforcers(ap *secv1.AuthorizationPolicy, users map[string][]string) (ztunnel, waypoint bool, why string) {
	ix := a.m.ix
	targets := ap.Spec.TargetRefs
	if len(targets) == 0 {
		targets = []secv1.TargetRef{{Kind: "Namespace", Name: ap.Namespace}}
	}
	var reasons []string
	enrolledIn := func(pods []string) bool { return len(pods) > 0 }
	for _, tr := range targets {
		switch {
		case tr.Group == "" && tr.Kind == "Namespace" && tr.Name == ap.Namespace:
			var pods []string
			for _, p := range ix.Pods {
				if ok, _ := ix.Enrolled(p); ok && p.Namespace == ap.Namespace && !podTerminated(p) {
					pods = append(pods, p.Name)
				}
			}
			if enrolledIn(pods) {
				ztunnel = true
			} else {
				reasons = append(reasons, "namespace "+ap.Namespace+" has no pod in the mesh")
			}
		case tr.Group == "" && tr.Kind == "Service":
			svc := ix.Service(ap.Namespace, tr.Name)
			if svc == nil {
				continue
			}
			var pods []string
			for _, p := range ix.SelectedPods(svc) {
				if ok, _ := ix.Enrolled(p); ok && !podTerminated(p) {
					pods = append(pods, p.Name)
				}
			}
			// As translate does: a Service with a waypoint has its policies
			// enforced there; without one, by ztunnel on its pods.
			b := ix.WaypointForService(svc)
			if b.Gateway != nil {
				waypoint = true
			} else if enrolledIn(pods) {
				ztunnel = true
			}
			if !enrolledIn(pods) && b.Gateway == nil {
				reasons = append(reasons, fmt.Sprintf("Service %s has no workload in the mesh and no waypoint", model.Key(svc.Namespace, svc.Name)))
			}
		case tr.Group == gwv1.GroupName && tr.Kind == "Gateway":
			gw := ix.Gateway(ap.Namespace, tr.Name)
			if gw == nil {
				continue
			}
			if len(users[model.Key(gw.Namespace, gw.Name)]) > 0 {
				waypoint = true
			} else {
				reasons = append(reasons, "no Service or pod uses waypoint "+model.Key(gw.Namespace, gw.Name))
			}
		}
	}
	return ztunnel, waypoint, strings.Join(reasons, "; ")
}
