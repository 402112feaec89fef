package deploy_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/warren-mesh/warren/internal/kubetest"
	"github.com/warren-mesh/warren/istiod-lite/deploy"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

const wait = 30 * time.Second

// must returns v or panics on err (setup steps only; the panic fails the test).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func waypointGateway(ns, name string) *gwv1.Gateway {
	return &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: gwv1.GatewaySpec{GatewayClassName: model.WaypointClass, Listeners: []gwv1.Listener{
			{Name: model.WaypointListenerName, Port: model.HBONEPort, Protocol: "HBONE"},
		}},
	}
}

// TestDeployerCreatesCorrectsAndDeletes runs the deployer against a real
// API server: it creates the ServiceAccount, Service and Deployment of a
// waypoint with owner references and the no-capture label, sends nothing
// when told the same thing again, reverts drift (an edited image, a
// deleted Service), leaves an object of someone else's alone, and deletes
// what it created when the waypoint goes away.
func TestDeployerCreatesCorrectsAndDeletes(t *testing.T) {
	env := kubetest.StartMesh(t)
	ctx := t.Context()
	cs := env.Client
	gw := env.GatewayClient(t)
	must(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}))
	wpGW := must(gw.GatewayV1().Gateways("shop").Create(ctx, waypointGateway("shop", "waypoint"), metav1.CreateOptions{}))
	clashGW := must(gw.GatewayV1().Gateways("shop").Create(ctx, waypointGateway("shop", "clash"), metav1.CreateOptions{}))
	theirs := must(cs.AppsV1().Deployments("shop").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "clash"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "theirs"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "theirs"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/theirs:1"}}},
			},
		},
	}, metav1.CreateOptions{}))

	cfg, requests := kubetest.CountingConfig(env.Config)
	d := must(deploy.New(deploy.Options{
		Client:     must(kubernetes.NewForConfig(cfg)),
		XDSAddress: "istiod-lite.warren-system.svc:15012",
		Registerer: prometheus.NewRegistry(),
		RetryDelay: 200 * time.Millisecond,
	}))
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Start(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })

	snap := &model.Snapshot{Gateways: []*gwv1.Gateway{wpGW, clashGW}}
	wps := []translate.Waypoint{
		{Namespace: "shop", Name: "waypoint", For: model.WaypointForService, Identity: "spiffe://cluster.local/ns/shop/sa/waypoint"},
		{Namespace: "shop", Name: "clash", For: model.WaypointForService, Identity: "spiffe://cluster.local/ns/shop/sa/clash"},
	}
	d.Update(snap, wps)

	var dep *appsv1.Deployment
	var svc *corev1.Service
	var sa *corev1.ServiceAccount
	kubetest.Eventually(t, wait, "waypoint objects created", func() bool {
		var err1, err2, err3 error
		dep, err1 = cs.AppsV1().Deployments("shop").Get(ctx, "waypoint", metav1.GetOptions{})
		svc, err2 = cs.CoreV1().Services("shop").Get(ctx, "waypoint", metav1.GetOptions{})
		sa, err3 = cs.CoreV1().ServiceAccounts("shop").Get(ctx, "waypoint", metav1.GetOptions{})
		return err1 == nil && err2 == nil && err3 == nil
	})
	for _, o := range []metav1.Object{dep, svc, sa} {
		refs := o.GetOwnerReferences()
		if len(refs) != 1 || refs[0].UID != wpGW.UID || refs[0].Kind != "Gateway" || refs[0].APIVersion != "gateway.networking.k8s.io/v1" ||
			refs[0].Controller == nil || !*refs[0].Controller || refs[0].BlockOwnerDeletion == nil || !*refs[0].BlockOwnerDeletion {
			t.Errorf("%T %s owner references %+v", o, o.GetName(), refs)
		}
		if o.GetLabels()[deploy.LabelGatewayName] != "waypoint" || o.GetLabels()[deploy.LabelManagedBy] != deploy.ManagedBy {
			t.Errorf("%T %s labels %v", o, o.GetName(), o.GetLabels())
		}
	}
	pod := dep.Spec.Template
	if pod.Labels[model.LabelDataplaneMode] != model.DataplaneNone || pod.Labels[deploy.LabelGatewayName] != "waypoint" {
		t.Errorf("pod labels %v: want %s=%s and the gateway name", pod.Labels, model.LabelDataplaneMode, model.DataplaneNone)
	}
	if pod.Spec.ServiceAccountName != "waypoint" {
		t.Errorf("service account %q", pod.Spec.ServiceAccountName)
	}
	ctr := pod.Spec.Containers[0]
	if ctr.Image != "warren/waypoint:dev" || ctr.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("image %s %s", ctr.Image, ctr.ImagePullPolicy)
	}
	for _, want := range []string{"--gateway-name=waypoint", "--gateway-namespace=shop", "--xds-address=istiod-lite.warren-system.svc:15012", "--ca-address=istiod-lite.warren-system.svc:15012", "--identity=spiffe://cluster.local/ns/shop/sa/waypoint"} {
		if !slices.Contains(ctr.Args, want) {
			t.Errorf("args %v lack %s", ctr.Args, want)
		}
	}
	ports := map[int32]bool{}
	for _, p := range ctr.Ports {
		ports[p.ContainerPort] = true
	}
	if !ports[15008] || !ports[15021] || !ports[15020] {
		t.Errorf("container ports %v", ctr.Ports)
	}
	if pr := ctr.ReadinessProbe; pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != "/healthz/ready" || pr.HTTPGet.Port.IntValue() != 15021 {
		t.Errorf("readiness probe %+v", pr)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 15008 || svc.Spec.Ports[0].Name != "mesh" || svc.Spec.Selector[deploy.LabelGatewayName] != "waypoint" || svc.Spec.ClusterIP == "" {
		t.Errorf("service spec %+v", svc.Spec)
	}
	if svc.Labels[model.LabelUseWaypoint] != model.WaypointNone {
		t.Errorf("waypoint Service labels %v lack %s=none", svc.Labels, model.LabelUseWaypoint)
	}
	if len(dep.ManagedFields) == 0 || dep.ManagedFields[0].Manager != deploy.FieldManager {
		t.Errorf("managed fields %+v: want field manager %s", dep.ManagedFields, deploy.FieldManager)
	}

	// Someone else's Deployment of the same name is left alone (the
	// clash Gateway still gets its ServiceAccount and Service).
	kubetest.Eventually(t, wait, "clash ServiceAccount", func() bool {
		_, err := cs.CoreV1().ServiceAccounts("shop").Get(ctx, "clash", metav1.GetOptions{})
		return err == nil
	})
	got := must(cs.AppsV1().Deployments("shop").Get(ctx, "clash", metav1.GetOptions{}))
	if got.ResourceVersion != theirs.ResourceVersion || len(got.OwnerReferences) != 0 {
		t.Errorf("deployer modified a Deployment it does not manage: %+v", got.ObjectMeta)
	}

	// Telling it the same again sends nothing once settled (the clash keeps
	// being refused with a read, never a write).
	settle(t, requests)
	before := len(requests.Writes(nil))
	for range 5 {
		d.Update(snap, wps)
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	if after := requests.Writes(nil); len(after) != before {
		t.Errorf("repeating the same waypoints wrote: %v", after[before:])
	}

	// Drift: an edited image comes back, a deleted Service is recreated.
	dep = must(cs.AppsV1().Deployments("shop").Get(ctx, "waypoint", metav1.GetOptions{}))
	dep.Spec.Template.Spec.Containers[0].Image = "example.invalid/hijack:1"
	must(cs.AppsV1().Deployments("shop").Update(ctx, dep, metav1.UpdateOptions{}))
	kubetest.Eventually(t, wait, "image drift reverted", func() bool {
		d := must(cs.AppsV1().Deployments("shop").Get(ctx, "waypoint", metav1.GetOptions{}))
		return d.Spec.Template.Spec.Containers[0].Image == "warren/waypoint:dev"
	})
	if err := cs.CoreV1().Services("shop").Delete(ctx, "waypoint", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	kubetest.Eventually(t, wait, "deleted Service recreated", func() bool {
		s, err := cs.CoreV1().Services("shop").Get(ctx, "waypoint", metav1.GetOptions{})
		return err == nil && s.UID != svc.UID
	})

	// The waypoints go away: what the deployer created goes with them,
	// someone else's Deployment stays.
	d.Update(&model.Snapshot{}, nil)
	kubetest.Eventually(t, wait, "waypoint objects deleted", func() bool {
		_, e1 := cs.AppsV1().Deployments("shop").Get(ctx, "waypoint", metav1.GetOptions{})
		_, e2 := cs.CoreV1().Services("shop").Get(ctx, "waypoint", metav1.GetOptions{})
		_, e3 := cs.CoreV1().ServiceAccounts("shop").Get(ctx, "waypoint", metav1.GetOptions{})
		_, e4 := cs.CoreV1().ServiceAccounts("shop").Get(ctx, "clash", metav1.GetOptions{})
		return apierrors.IsNotFound(e1) && apierrors.IsNotFound(e2) && apierrors.IsNotFound(e3) && apierrors.IsNotFound(e4)
	})
	if _, err := cs.AppsV1().Deployments("shop").Get(ctx, "clash", metav1.GetOptions{}); err != nil {
		t.Errorf("someone else's Deployment: %v", err)
	}
}

// settle waits until no write happened for two seconds.
func settle(t *testing.T, r *kubetest.Requests) {
	t.Helper()
	last, since := -1, time.Now()
	kubetest.Eventually(t, wait, "writes to settle", func() bool {
		if n := len(r.Writes(nil)); n != last {
			last, since = n, time.Now()
		}
		return time.Since(since) > 2*time.Second
	})
}

// TestRenderOptions checks the options reach the rendered Deployment.
func TestRenderOptions(t *testing.T) {
	opts := deploy.Options{Image: "registry.example/waypoint:1", PullPolicy: corev1.PullNever, XDSAddress: "xds:1", CAAddress: "ca:2", Replicas: 3}
	w := deploy.Waypoint{Waypoint: translate.Waypoint{Namespace: "ns", Name: "wp", For: "all", Identity: "spiffe://td/ns/ns/sa/wp"}, GatewayUID: "uid-1"}
	d := opts.Deployment(w)
	c := d.Spec.Template.Spec.Containers[0]
	if *c.Image != opts.Image || *c.ImagePullPolicy != corev1.PullNever || *d.Spec.Replicas != 3 {
		t.Fatalf("rendered %s %s %d", *c.Image, *c.ImagePullPolicy, *d.Spec.Replicas)
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--xds-address=xds:1", "--ca-address=ca:2", "--waypoint-for=all", "--gateway-name=wp", "--gateway-namespace=ns"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	if uid := d.OwnerReferences[0].UID; uid == nil || *uid != "uid-1" {
		t.Errorf("owner %+v", d.OwnerReferences)
	}
}
