package status_test

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwxv1a1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"

	"github.com/warren-mesh/warren/internal/kubetest"
	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/status"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// steadyState is how long the loop must run without writing anything.
const steadyState = 60 * time.Second

// TestMeshLoopAgainstAPIServer runs source → translate → status writer →
// waypoint deployer against a real kube-apiserver with the Gateway API
// experimental CRDs and Warren's CRD installed, and checks what a user
// would see: translated workloads, services and route tables; statuses
// with the right reasons and observedGeneration on every kind, other
// controllers' entries kept and Warren's stale ones removed; the waypoint
// objects; Programmed following the Deployment's availability; no write at
// all during a minute of steady state (with translations running); and
// the waypoint objects removed with their Gateway.
func TestMeshLoopAgainstAPIServer(t *testing.T) {
	env := kubetest.StartMesh(t)
	ctx := t.Context()
	c := newCluster(t, env)

	c.namespace("shop", map[string]string{model.LabelDataplaneMode: model.DataplaneAmbient, model.LabelUseWaypoint: "waypoint"})
	c.namespace("web", map[string]string{model.LabelDataplaneMode: model.DataplaneAmbient})
	must(c.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a", Labels: map[string]string{corev1.LabelTopologyZone: "z1"}}}, metav1.CreateOptions{}))
	c.pod("shop", "echo-1", "10.244.1.10", map[string]string{"app": "echo"})
	c.pod("web", "client-1", "10.244.2.10", map[string]string{"app": "client"})
	http, grpc := "http", "grpc"
	c.service("shop", "echo", map[string]string{"app": "echo"},
		corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), AppProtocol: &http},
		corev1.ServicePort{Name: "grpc", Port: 7070, AppProtocol: &grpc})
	c.gatewayClass(model.WaypointClass, model.WaypointController)
	c.gatewayClass("other-class", otherController)
	c.gateway("shop", "waypoint", model.WaypointClass, gwv1.Listener{Name: model.WaypointListenerName, Port: model.HBONEPort, Protocol: translate.ProtocolHBONE})
	c.gateway("shop", "other-gw", "other-class", gwv1.Listener{Name: "http", Port: 80, Protocol: gwv1.HTTPProtocolType})

	// HTTPRoute with a mesh parent and another implementation's Gateway
	// parent; its status already holds the other controller's entry and a
	// stale entry of Warren's (a parent it no longer has).
	prefix := gwv1.PathMatchPathPrefix
	v2 := "/v2"
	route := must(c.gw.GatewayV1().HTTPRoutes("shop").Create(ctx, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "echo"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{serviceRef("echo", 80), gatewayRef("other-gw")}},
			Rules: []gwv1.HTTPRouteRule{
				{Matches: []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: &prefix, Value: &v2}}}, BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: backend("echo", 80)}}},
				{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: backend("echo", 80)}}},
			},
		},
	}, metav1.CreateOptions{}))
	theirs := gwv1.RouteParentStatus{ParentRef: gatewayRef("other-gw"), ControllerName: otherController,
		Conditions: []metav1.Condition{condition("Accepted", true, "Accepted", "accepted by the other implementation")}}
	route.Status.Parents = []gwv1.RouteParentStatus{
		theirs,
		{ParentRef: serviceRef("old-svc", 0), ControllerName: model.MeshController,
			Conditions: []metav1.Condition{condition("Accepted", true, "Accepted", "stale")}},
	}
	route = must(c.gw.GatewayV1().HTTPRoutes("shop").UpdateStatus(ctx, route, metav1.UpdateOptions{}))
	theirs = *findParent(route.Status.Parents, otherController, "other-gw")

	must(c.gw.GatewayV1().HTTPRoutes("shop").Create(ctx, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "broken"},
		Spec:       gwv1.HTTPRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{serviceRef("missing", 0)}}},
	}, metav1.CreateOptions{}))
	must(c.gw.GatewayV1().GRPCRoutes("shop").Create(ctx, &gwv1.GRPCRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "echo-grpc"},
		Spec: gwv1.GRPCRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{serviceRef("echo", 7070)}},
			Rules:           []gwv1.GRPCRouteRule{{BackendRefs: []gwv1.GRPCBackendRef{{BackendRef: backend("echo", 7070)}}}},
		},
	}, metav1.CreateOptions{}))

	pct := 20
	interval := gwv1.Duration("10s")
	btp := must(c.gw.ExperimentalV1alpha1().XBackendTrafficPolicies("shop").Create(ctx, &gwxv1a1.XBackendTrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "budget"},
		Spec: gwxv1a1.BackendTrafficPolicySpec{
			TargetRefs:      []gwxv1a1.LocalPolicyTargetReference{{Group: "", Kind: "Service", Name: "echo"}},
			RetryConstraint: &gwxv1a1.RetryConstraint{Budget: &gwxv1a1.BudgetDetails{Percent: &pct, Interval: &interval}},
		},
	}, metav1.CreateOptions{}))
	theirAncestor := gwv1.PolicyAncestorStatus{AncestorRef: gatewayRef("other-gw"), ControllerName: otherController,
		Conditions: []metav1.Condition{condition("Accepted", true, "Accepted", "theirs")}}
	btp.Status.Ancestors = []gwv1.PolicyAncestorStatus{theirAncestor}
	must(c.gw.ExperimentalV1alpha1().XBackendTrafficPolicies("shop").UpdateStatus(ctx, btp, metav1.UpdateOptions{}))

	c.authorizationPolicy("shop", "allow-web", map[string]any{
		"targetRefs": []any{map[string]any{"group": "", "kind": "Service", "name": "echo"}},
		"action":     "ALLOW",
		"rules":      []any{map[string]any{"from": map[string]any{"namespaces": []any{"web"}}, "to": map[string]any{"ports": []any{int64(8080)}}}},
	})
	c.authorizationPolicy("shop", "bad-target", map[string]any{
		"targetRefs": []any{map[string]any{"group": "", "kind": "Service", "name": "nope"}},
	})

	m := startMesh(t, env)

	// Translation sees the cluster.
	echoKey := "shop/echo.shop.svc.cluster.local"
	kubetest.Eventually(t, wait, "translated output with the waypoint bound", func() bool {
		out, _ := m.output()
		if out == nil {
			return false
		}
		w, s, l7 := out.Workloads["shop/echo-1"], out.Services[echoKey], out.L7Services[echoKey]
		return w != nil && s != nil && l7 != nil && s.Waypoint != nil && out.Authorizations["shop/allow-web"] != nil &&
			len(l7.Ports) == 2 && l7.Ports[0].Producer != nil && l7.Ports[1].Producer != nil
	})
	out, _ := m.output()
	w := out.Workloads["shop/echo-1"]
	if len(w.Addresses) != 1 || w.Addresses[0] != "10.244.1.10" || w.Tunnel != warrenv1.TunnelProtocol_TUNNEL_HBONE || w.Zone != "z1" || w.Services[echoKey] == nil {
		t.Errorf("workload shop/echo-1: %v", w)
	}
	if wl := out.Workloads["web/client-1"]; wl == nil || wl.Identity != "spiffe://cluster.local/ns/web/sa/default" {
		t.Errorf("workload web/client-1: %v", wl)
	}
	if s := out.Services[echoKey]; s.Waypoint.Gateway != "shop/waypoint" || s.TrafficPolicy == nil || s.TrafficPolicy.RetryBudget.GetPercent() != 20 {
		t.Errorf("service %s: %v", echoKey, s)
	}
	l7 := out.L7Services[echoKey]
	if l7.Waypoint != "shop/waypoint" || l7.Ports[0].Port != 80 || len(l7.Ports[0].Producer.Routes) == 0 || l7.Ports[1].Protocol != warrenv1.Protocol_GRPC {
		t.Errorf("L7 service %s: %v", echoKey, l7)
	}
	if len(out.Waypoints) != 1 || out.Waypoints[0].Name != "waypoint" {
		t.Errorf("waypoints %v", out.Waypoints)
	}

	// Statuses.
	kubetest.Eventually(t, wait, "HTTPRoute shop/echo status", func() bool {
		r := must(c.gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "echo", metav1.GetOptions{}))
		ours := findParent(r.Status.Parents, model.MeshController, "echo")
		return ours != nil && has(ours.Conditions, "Accepted", true, "Accepted", r.Generation) &&
			has(ours.Conditions, "ResolvedRefs", true, "ResolvedRefs", r.Generation) &&
			has(ours.Conditions, translate.WaypointBoundCondition, true, "WaypointBound", r.Generation) &&
			findParent(r.Status.Parents, model.MeshController, "old-svc") == nil
	})
	r := must(c.gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "echo", metav1.GetOptions{}))
	if got := findParent(r.Status.Parents, otherController, "other-gw"); got == nil || !equalParent(*got, theirs) {
		t.Errorf("other controller's parent status not preserved: %+v", r.Status.Parents)
	}
	if len(r.Status.Parents) != 2 {
		t.Errorf("parents %+v: want the other controller's and Warren's", r.Status.Parents)
	}
	kubetest.Eventually(t, wait, "HTTPRoute shop/broken NoMatchingParent", func() bool {
		r := must(c.gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "broken", metav1.GetOptions{}))
		p := findParent(r.Status.Parents, model.MeshController, "missing")
		return p != nil && has(p.Conditions, "Accepted", false, "NoMatchingParent", r.Generation)
	})
	kubetest.Eventually(t, wait, "GRPCRoute status", func() bool {
		r := must(c.gw.GatewayV1().GRPCRoutes("shop").Get(ctx, "echo-grpc", metav1.GetOptions{}))
		p := findParent(r.Status.Parents, model.MeshController, "echo")
		return p != nil && has(p.Conditions, "Accepted", true, "Accepted", r.Generation) && has(p.Conditions, translate.WaypointBoundCondition, true, "WaypointBound", r.Generation)
	})
	kubetest.Eventually(t, wait, "GatewayClass status", func() bool {
		gc := must(c.gw.GatewayV1().GatewayClasses().Get(ctx, model.WaypointClass, metav1.GetOptions{}))
		return has(gc.Status.Conditions, "Accepted", true, "Accepted", gc.Generation) && has(gc.Status.Conditions, "SupportedVersion", true, "SupportedVersion", gc.Generation)
	})
	kubetest.Eventually(t, wait, "waypoint Gateway accepted, not programmed before its Deployment is available", func() bool {
		g := must(c.gw.GatewayV1().Gateways("shop").Get(ctx, "waypoint", metav1.GetOptions{}))
		return has(g.Status.Conditions, "Accepted", true, "Accepted", g.Generation) &&
			has(g.Status.Conditions, "Programmed", false, "Pending", g.Generation) &&
			len(g.Status.Addresses) == 1 && len(g.Status.Listeners) == 1 &&
			has(g.Status.Listeners[0].Conditions, "Programmed", true, "Programmed", g.Generation)
	})
	kubetest.Eventually(t, wait, "XBackendTrafficPolicy ancestors", func() bool {
		p := must(c.gw.ExperimentalV1alpha1().XBackendTrafficPolicies("shop").Get(ctx, "budget", metav1.GetOptions{}))
		var ours *gwv1.PolicyAncestorStatus
		for i := range p.Status.Ancestors {
			if p.Status.Ancestors[i].ControllerName == model.MeshController {
				ours = &p.Status.Ancestors[i]
			}
		}
		return ours != nil && has(ours.Conditions, "Accepted", true, "Accepted", p.Generation) &&
			len(p.Status.Ancestors) == 2 && p.Status.Ancestors[0].ControllerName == otherController
	})
	kubetest.Eventually(t, wait, "AuthorizationPolicy statuses", func() bool {
		ok := c.getAuthorizationPolicy("shop", "allow-web")
		bad := c.getAuthorizationPolicy("shop", "bad-target")
		return has(ok.Status.Conditions, "Accepted", true, "Accepted", ok.Generation) &&
			has(ok.Status.Conditions, translate.PolicyEnforced, true, "Enforced", ok.Generation) &&
			has(bad.Status.Conditions, "Accepted", false, translate.ReasonTargetNotFound, bad.Generation)
	})
	other := must(c.gw.GatewayV1().Gateways("shop").Get(ctx, "other-gw", metav1.GetOptions{}))
	if c := meta.FindStatusCondition(other.Status.Conditions, "Accepted"); c == nil || c.Status != metav1.ConditionUnknown {
		t.Errorf("a Gateway of another implementation got status: %+v", other.Status.Conditions)
	}

	// The waypoint's objects.
	gwObj := must(c.gw.GatewayV1().Gateways("shop").Get(ctx, "waypoint", metav1.GetOptions{}))
	var dep *appsv1.Deployment
	kubetest.Eventually(t, wait, "waypoint Deployment, Service and ServiceAccount", func() bool {
		var err error
		dep, err = c.cs.AppsV1().Deployments("shop").Get(ctx, "waypoint", metav1.GetOptions{})
		_, e2 := c.cs.CoreV1().Services("shop").Get(ctx, "waypoint", metav1.GetOptions{})
		_, e3 := c.cs.CoreV1().ServiceAccounts("shop").Get(ctx, "waypoint", metav1.GetOptions{})
		return err == nil && e2 == nil && e3 == nil
	})
	if refs := dep.OwnerReferences; len(refs) != 1 || refs[0].UID != gwObj.UID || !*refs[0].Controller {
		t.Errorf("Deployment owner references %+v", refs)
	}
	if dep.Spec.Template.Labels[model.LabelDataplaneMode] != model.DataplaneNone {
		t.Errorf("waypoint pods are not labelled out of capture: %v", dep.Spec.Template.Labels)
	}

	// The Deployment becomes available: the Gateway is Programmed.
	dep.Status = appsv1.DeploymentStatus{Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1, ObservedGeneration: dep.Generation,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"}}}
	must(c.cs.AppsV1().Deployments("shop").UpdateStatus(ctx, dep, metav1.UpdateOptions{}))
	kubetest.Eventually(t, wait, "waypoint Gateway Programmed", func() bool {
		g := must(c.gw.GatewayV1().Gateways("shop").Get(ctx, "waypoint", metav1.GetOptions{}))
		return has(g.Status.Conditions, "Programmed", true, "Programmed", g.Generation)
	})

	// A spec change moves observedGeneration and the transition time.
	before := meta.FindStatusCondition(findParent(must(c.gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "echo", metav1.GetOptions{})).Status.Parents, model.MeshController, "echo").Conditions, "Accepted")
	time.Sleep(1100 * time.Millisecond) // transition times have second precision
	r = must(c.gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "echo", metav1.GetOptions{}))
	r.Spec.Rules = r.Spec.Rules[1:]
	must(c.gw.GatewayV1().HTTPRoutes("shop").Update(ctx, r, metav1.UpdateOptions{}))
	kubetest.Eventually(t, wait, "observedGeneration follows the route", func() bool {
		r := must(c.gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "echo", metav1.GetOptions{}))
		p := findParent(r.Status.Parents, model.MeshController, "echo")
		return p != nil && has(p.Conditions, "Accepted", true, "Accepted", r.Generation) && r.Generation == before.ObservedGeneration+1
	})
	after := meta.FindStatusCondition(findParent(must(c.gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "echo", metav1.GetOptions{})).Status.Parents, model.MeshController, "echo").Conditions, "Accepted")
	if !after.LastTransitionTime.After(before.LastTransitionTime.Time) {
		t.Errorf("Accepted lastTransitionTime %v did not move after the generation changed (was %v)", after.LastTransitionTime, before.LastTransitionTime)
	}

	// Steady state: a minute of translations (a pod label changes every 2s)
	// writes nothing, neither status nor waypoint objects.
	settle(t, m.writes)
	writesBefore := m.writes.Writes(nil)
	metricBefore := totalWrites(t, m)
	_, roundsBefore := m.output()
	start := time.Now()
	for i := 0; time.Since(start) < steadyState; i++ {
		p := must(c.cs.CoreV1().Pods("web").Get(ctx, "client-1", metav1.GetOptions{}))
		p.Labels["poke"] = time.Now().Format("150405.000")
		must(c.cs.CoreV1().Pods("web").Update(ctx, p, metav1.UpdateOptions{}))
		time.Sleep(2 * time.Second)
	}
	_, roundsAfter := m.output()
	if n := roundsAfter - roundsBefore; n < 10 {
		t.Errorf("only %d translations ran during the steady state; the test proves nothing", n)
	}
	if got := m.writes.Writes(nil); len(got) != len(writesBefore) {
		t.Errorf("steady state wrote %d requests: %v", len(got)-len(writesBefore), got[len(writesBefore):])
	}
	if got := totalWrites(t, m); got != metricBefore {
		t.Errorf("warren_status_writes_total moved from %v to %v in steady state", metricBefore, got)
	}
	t.Logf("steady state: %d translations in %v, 0 writes", roundsAfter-roundsBefore, time.Since(start).Round(time.Second))

	// The Gateway goes: its objects go, and the route reports no waypoint.
	if err := c.gw.GatewayV1().Gateways("shop").Delete(ctx, "waypoint", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	kubetest.Eventually(t, wait, "waypoint objects deleted", func() bool {
		_, e1 := c.cs.AppsV1().Deployments("shop").Get(ctx, "waypoint", metav1.GetOptions{})
		_, e2 := c.cs.CoreV1().Services("shop").Get(ctx, "waypoint", metav1.GetOptions{})
		_, e3 := c.cs.CoreV1().ServiceAccounts("shop").Get(ctx, "waypoint", metav1.GetOptions{})
		return apierrors.IsNotFound(e1) && apierrors.IsNotFound(e2) && apierrors.IsNotFound(e3)
	})
	kubetest.Eventually(t, wait, "route reports the missing waypoint", func() bool {
		r := must(c.gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "echo", metav1.GetOptions{}))
		p := findParent(r.Status.Parents, model.MeshController, "echo")
		return p != nil && has(p.Conditions, translate.WaypointBoundCondition, false, "NoWaypoint", r.Generation)
	})
	if errs := m.errors(); len(errs) > 0 {
		t.Errorf("status writes failed during the test: %v", errs)
	}
	t.Logf("requests written in total: %d status, %d other", len(m.writes.Writes(isStatusWrite)), len(m.writes.Writes(nil))-len(m.writes.Writes(isStatusWrite)))
}

func totalWrites(t *testing.T, m *mesh) float64 {
	var sum float64
	for _, k := range []string{status.KindGatewayClass, status.KindGateway, status.KindHTTPRoute, status.KindGRPCRoute, status.KindBackendTrafficPolicy, status.KindAuthorizationPolicy} {
		sum += counter(t, m.reg, "warren_status_writes_total", k)
	}
	return sum
}

// settle waits until neither the writer nor the deployer wrote for 3s.
func settle(t *testing.T, r *kubetest.Requests) {
	t.Helper()
	last, since := -1, time.Now()
	kubetest.Eventually(t, wait, "writes to settle", func() bool {
		if n := len(r.Writes(nil)); n != last {
			last, since = n, time.Now()
		}
		return time.Since(since) > 3*time.Second
	})
}

func equalParent(a, b gwv1.RouteParentStatus) bool {
	if a.ControllerName != b.ControllerName || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message || !x.LastTransitionTime.Equal(&y.LastTransitionTime) {
			return false
		}
	}
	return true
}
