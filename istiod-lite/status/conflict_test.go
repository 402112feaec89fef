package status_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/warren-mesh/warren/internal/kubetest"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/kube"
	"github.com/warren-mesh/warren/istiod-lite/status"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// TestConflictIsRetriedWithAFreshRead writes status computed from a
// snapshot that is stale by the time of the write: another controller
// updated the route's and the policy's status in between. The first update
// conflicts; the writer re-reads, merges, and writes once, keeping the
// other controller's data. Writing the same stale snapshot again conflicts,
// re-reads, finds nothing to change and writes nothing. A spec change
// after the snapshot makes the writer skip the object (a newer translation
// will cover it) instead of writing an old generation's status.
func TestConflictIsRetriedWithAFreshRead(t *testing.T) {
	env := kubetest.StartMesh(t)
	ctx := t.Context()
	c := newCluster(t, env)
	c.namespace("shop", nil)
	c.service("shop", "echo", map[string]string{"app": "echo"}, corev1.ServicePort{Name: "http", Port: 80})
	must(c.gw.GatewayV1().HTTPRoutes("shop").Create(ctx, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "echo"},
		Spec:       gwv1.HTTPRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{serviceRef("echo", 0)}}},
	}, metav1.CreateOptions{}))
	c.authorizationPolicy("shop", "allow", map[string]any{"action": "ALLOW"})

	var opts kube.Options
	if err := opts.ClientsForConfig(env.Config); err != nil {
		t.Fatal(err)
	}
	src := must(kube.New(opts))
	srcCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Start(srcCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	var snap *model.Snapshot
	kubetest.Eventually(t, wait, "snapshot with the route and the policy", func() bool {
		snap = src.Snapshot()
		return src.HasSynced() && len(snap.HTTPRoutes) == 1 && len(snap.AuthorizationPolicies) == 1
	})
	desired := translate.Translate(model.NewIndex(snap)).Status
	if len(desired.HTTPRoutes["shop/echo"]) != 1 || len(desired.AuthorizationPolicies["shop/allow"]) == 0 {
		t.Fatalf("translation gave no status to write: %+v", desired)
	}

	// Another controller writes after the snapshot was taken.
	r := must(c.gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "echo", metav1.GetOptions{}))
	r.Status.Parents = append(r.Status.Parents, gwv1.RouteParentStatus{ParentRef: gatewayRef("elsewhere"), ControllerName: otherController,
		Conditions: []metav1.Condition{condition("Accepted", true, "Accepted", "theirs")}})
	must(c.gw.GatewayV1().HTTPRoutes("shop").UpdateStatus(ctx, r, metav1.UpdateOptions{}))
	u := must(c.dyn.Resource(apGVR).Namespace("shop").Get(ctx, "allow", metav1.GetOptions{}))
	audited := condition("example.com/Audited", true, "Audited", "checked by another tool")
	auditedMap := must(runtime.DefaultUnstructuredConverter.ToUnstructured(&audited))
	if err := unstructured.SetNestedSlice(u.Object, []any{auditedMap}, "status", "conditions"); err != nil {
		t.Fatal(err)
	}
	must(c.dyn.Resource(apGVR).Namespace("shop").UpdateStatus(ctx, u, metav1.UpdateOptions{}))

	reg := prometheus.NewRegistry()
	cfg, requests := kubetest.CountingConfig(env.Config)
	w := must(status.New(status.Options{
		Gateway:    must(gwclient.NewForConfig(cfg)),
		Dynamic:    must(dynamic.NewForConfig(cfg)),
		Registerer: reg,
	}))
	if err := w.Write(ctx, snap, desired); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{status.KindHTTPRoute, status.KindAuthorizationPolicy} {
		if n := counter(t, reg, "warren_status_conflicts_total", kind); n != 1 {
			t.Errorf("%s conflicts = %v, want 1", kind, n)
		}
		if n := counter(t, reg, "warren_status_writes_total", kind); n != 1 {
			t.Errorf("%s writes = %v, want 1", kind, n)
		}
		if n := counter(t, reg, "warren_status_errors_total", kind); n != 0 {
			t.Errorf("%s errors = %v, want 0", kind, n)
		}
	}
	r = must(c.gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "echo", metav1.GetOptions{}))
	if findParent(r.Status.Parents, otherController, "elsewhere") == nil || findParent(r.Status.Parents, model.MeshController, "echo") == nil {
		t.Errorf("route parents after the retried write: %+v", r.Status.Parents)
	}
	ap := c.getAuthorizationPolicy("shop", "allow")
	if meta.FindStatusCondition(ap.Status.Conditions, "example.com/Audited") == nil || !has(ap.Status.Conditions, "Accepted", true, "Accepted", ap.Generation) {
		t.Errorf("policy conditions after the retried write: %+v", ap.Status.Conditions)
	}

	// The same stale snapshot again: conflict, fresh read, nothing to write.
	writes := len(requests.Writes(isStatusWrite))
	if err := w.Write(ctx, snap, desired); err != nil {
		t.Fatal(err)
	}
	if n := counter(t, reg, "warren_status_writes_total", status.KindHTTPRoute); n != 1 {
		t.Errorf("HTTPRoute writes = %v after a no-op pass, want 1", n)
	}
	if n := counter(t, reg, "warren_status_conflicts_total", status.KindHTTPRoute); n != 2 {
		t.Errorf("HTTPRoute conflicts = %v, want 2 (the stale object is tried first)", n)
	}
	if got := len(requests.Writes(isStatusWrite)); got != writes+2 {
		t.Errorf("%d status requests in the no-op pass, want 2 refused ones", got-writes)
	}

	// The spec moves on after the snapshot: the old translation is not written.
	r = must(c.gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "echo", metav1.GetOptions{}))
	r.Spec.Hostnames = []gwv1.Hostname{"echo.example"}
	r = must(c.gw.GatewayV1().HTTPRoutes("shop").Update(ctx, r, metav1.UpdateOptions{}))
	r.Status.Parents = []gwv1.RouteParentStatus{} // "parents" is required: [] clears it
	must(c.gw.GatewayV1().HTTPRoutes("shop").UpdateStatus(ctx, r, metav1.UpdateOptions{}))
	if err := w.Write(ctx, snap, desired); err != nil {
		t.Fatal(err)
	}
	r = must(c.gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "echo", metav1.GetOptions{}))
	if len(r.Status.Parents) != 0 {
		t.Errorf("status of an older generation written: %+v", r.Status.Parents)
	}
	if n := counter(t, reg, "warren_status_errors_total", status.KindHTTPRoute); n != 0 {
		t.Errorf("HTTPRoute errors = %v, want 0 (a skip is not an error)", n)
	}

	// A fresh translation writes the new generation's status; once the
	// route's only mesh parent is gone, Warren's entry is removed and the
	// (required) list is left empty.
	fresh := func(gen int64) *model.Snapshot {
		var s *model.Snapshot
		kubetest.Eventually(t, wait, "snapshot of the new generation", func() bool {
			s = src.Snapshot()
			return len(s.HTTPRoutes) == 1 && s.HTTPRoutes[0].Generation == gen
		})
		return s
	}
	snap = fresh(r.Generation)
	if err := w.Write(ctx, snap, translate.Translate(model.NewIndex(snap)).Status); err != nil {
		t.Fatal(err)
	}
	r = must(c.gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "echo", metav1.GetOptions{}))
	if p := findParent(r.Status.Parents, model.MeshController, "echo"); p == nil || !has(p.Conditions, "Accepted", true, "Accepted", r.Generation) {
		t.Fatalf("fresh translation not written: %+v", r.Status.Parents)
	}
	r.Spec.ParentRefs = []gwv1.ParentReference{gatewayRef("elsewhere")}
	r = must(c.gw.GatewayV1().HTTPRoutes("shop").Update(ctx, r, metav1.UpdateOptions{}))
	snap = fresh(r.Generation)
	if err := w.Write(ctx, snap, translate.Translate(model.NewIndex(snap)).Status); err != nil {
		t.Fatal(err)
	}
	r = must(c.gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "echo", metav1.GetOptions{}))
	if len(r.Status.Parents) != 0 {
		t.Errorf("Warren's stale parent not removed: %+v", r.Status.Parents)
	}
}
