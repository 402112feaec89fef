package kube_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwxv1a1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/warren-mesh/warren/internal/kubetest"
	secv1 "github.com/warren-mesh/warren/istiod-lite/api/security/v1alpha1"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/kube"
)

const wait = 30 * time.Second

// must returns v or panics on err (setup steps only; the panic fails the test).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

type clients struct {
	t   testing.TB
	ctx context.Context
	cs  kubernetes.Interface
	gw  gwclient.Interface
	dyn dynamic.Interface
}

func newClients(t testing.TB, ctx context.Context, env *kubetest.Env) *clients {
	return &clients{t: t, ctx: ctx, cs: env.Client, gw: env.GatewayClient(t), dyn: env.DynamicClient(t)}
}

func (c *clients) namespace(name string, labels map[string]string) {
	must(c.cs.CoreV1().Namespaces().Create(c.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}))
}

// pod creates a pod and gives it an IP through the status subresource, as a
// kubelet would.
func (c *clients) pod(ns, name, ip string, labels map[string]string) *corev1.Pod {
	p := must(c.cs.CoreV1().Pods(ns).Create(c.ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}},
	}, metav1.CreateOptions{}))
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ip
	p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	return must(c.cs.CoreV1().Pods(ns).UpdateStatus(c.ctx, p, metav1.UpdateOptions{}))
}

func (c *clients) authorizationPolicy(ns, name string, spec map[string]any) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": secv1.GroupVersion.String(), "kind": "AuthorizationPolicy",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     spec,
	}}
	must(c.dyn.Resource(secv1.GroupVersion.WithResource(secv1.AuthorizationPolicyResource)).Namespace(ns).Create(c.ctx, u, metav1.CreateOptions{}))
}

func (c *clients) gatewayClass(name, controller string) {
	must(c.gw.GatewayV1().GatewayClasses().Create(c.ctx, &gwv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       gwv1.GatewayClassSpec{ControllerName: gwv1.GatewayController(controller)},
	}, metav1.CreateOptions{}))
}

func (c *clients) waypoint(ns, name string) {
	must(c.gw.GatewayV1().Gateways(ns).Create(c.ctx, &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: gwv1.GatewaySpec{GatewayClassName: model.WaypointClass, Listeners: []gwv1.Listener{
			{Name: model.WaypointListenerName, Port: model.HBONEPort, Protocol: "HBONE"},
		}},
	}, metav1.CreateOptions{}))
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startSource(t *testing.T, ctx context.Context, env *kubetest.Env, opts kube.Options) *kube.Source {
	t.Helper()
	if err := opts.ClientsForConfig(env.Config); err != nil {
		t.Fatal(err)
	}
	src := must(kube.New(opts))
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(ctx)
	go func() { done <- src.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("source: %v", err)
		}
	})
	kubetest.Eventually(t, wait, "source synced", src.HasSynced)
	return src
}

// TestSnapshotHoldsEveryWatchedKind creates one object of every kind the
// source watches in a real API server and checks the snapshot carries them,
// with the mesh config, managedFields stripped, only label-selected
// Deployments, and that a change is signalled.
func TestSnapshotHoldsEveryWatchedKind(t *testing.T) {
	env := kubetest.StartMesh(t)
	ctx := t.Context()
	c := newClients(t, ctx, env)

	c.namespace("shop", map[string]string{model.LabelDataplaneMode: model.DataplaneAmbient})
	must(c.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a", Labels: map[string]string{corev1.LabelTopologyZone: "z1"}}}, metav1.CreateOptions{}))
	c.pod("shop", "echo-1", "10.244.1.10", map[string]string{"app": "echo"})
	must(c.cs.CoreV1().Services("shop").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "echo"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "echo"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{}))
	must(c.cs.DiscoveryV1().EndpointSlices("shop").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "echo-x", Labels: map[string]string{discoveryv1.LabelServiceName: "echo"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.10"}}},
	}, metav1.CreateOptions{}))
	deployment := func(name string, labels map[string]string) {
		must(c.cs.AppsV1().Deployments("shop").Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/c:1"}}},
				},
			},
		}, metav1.CreateOptions{}))
	}
	deployment("waypoint", map[string]string{kube.WaypointDeploymentLabel: "waypoint"})
	deployment("unrelated", nil)
	c.gatewayClass(model.WaypointClass, model.WaypointController)
	c.waypoint("shop", "waypoint")
	port := gwv1.PortNumber(80)
	svcKind, core := gwv1.Kind("Service"), gwv1.Group("")
	must(c.gw.GatewayV1().HTTPRoutes("shop").Create(ctx, &gwv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "echo"},
		Spec:       gwv1.HTTPRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Group: &core, Kind: &svcKind, Name: "echo", Port: &port}}}},
	}, metav1.CreateOptions{}))
	must(c.gw.GatewayV1().GRPCRoutes("shop").Create(ctx, &gwv1.GRPCRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "echo-grpc"},
		Spec:       gwv1.GRPCRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Group: &core, Kind: &svcKind, Name: "echo"}}}},
	}, metav1.CreateOptions{}))
	must(c.gw.GatewayV1().ReferenceGrants("shop").Create(ctx, &gwv1.ReferenceGrant{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "from-web"},
		Spec: gwv1.ReferenceGrantSpec{
			From: []gwv1.ReferenceGrantFrom{{Group: gwv1.GroupName, Kind: "HTTPRoute", Namespace: "web"}},
			To:   []gwv1.ReferenceGrantTo{{Group: "", Kind: "Service"}},
		},
	}, metav1.CreateOptions{}))
	must(c.gw.ExperimentalV1alpha1().XBackendTrafficPolicies("shop").Create(ctx, &gwxv1a1.XBackendTrafficPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "budget"},
		Spec: gwxv1a1.BackendTrafficPolicySpec{
			TargetRefs: []gwxv1a1.LocalPolicyTargetReference{{Group: "", Kind: "Service", Name: "echo"}},
		},
	}, metav1.CreateOptions{}))
	c.authorizationPolicy("shop", "allow-web", map[string]any{
		"action": "ALLOW",
		"rules":  []any{map[string]any{"from": map[string]any{"namespaces": []any{"web"}}, "to": map[string]any{"ports": []any{int64(8080)}}}},
	})

	// Warren's CRD validates what the Go types cannot say.
	for name, spec := range map[string]map[string]any{
		"bad-action": {"action": "MAYBE"},
		"bad-port":   {"rules": []any{map[string]any{"to": map[string]any{"ports": []any{int64(0)}}}}},
		"high-port":  {"rules": []any{map[string]any{"to": map[string]any{"ports": []any{int64(65536)}}}}},
	} {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": secv1.GroupVersion.String(), "kind": "AuthorizationPolicy",
			"metadata": map[string]any{"namespace": "shop", "name": name}, "spec": spec,
		}}
		if _, err := c.dyn.Resource(secv1.GroupVersion.WithResource(secv1.AuthorizationPolicyResource)).Namespace("shop").Create(ctx, u, metav1.CreateOptions{}); err == nil {
			t.Errorf("AuthorizationPolicy %s accepted by the CRD", name)
		}
	}

	mesh := model.MeshConfig{TrustDomain: "example.org"}
	src := startSource(t, ctx, env, kube.Options{Mesh: mesh, Registerer: prometheus.NewRegistry()})
	var snap *model.Snapshot
	kubetest.Eventually(t, wait, "every object in the snapshot", func() bool {
		snap = src.Snapshot()
		return len(snap.Pods) == 1 && snap.Pods[0].Status.PodIP != "" && len(snap.Services) >= 1 &&
			len(snap.HTTPRoutes) == 1 && len(snap.GRPCRoutes) == 1 && len(snap.ReferenceGrants) == 1 &&
			len(snap.BackendTrafficPolicies) == 1 && len(snap.AuthorizationPolicies) == 1 &&
			len(snap.Gateways) == 1 && len(snap.GatewayClasses) == 1 && len(snap.WaypointDeployments) == 1 &&
			len(snap.Nodes) == 1 && len(snap.EndpointSlices) >= 1
	})
	if snap.Config != mesh {
		t.Errorf("config %+v, want %+v", snap.Config, mesh)
	}
	if got := snap.WaypointDeployments[0].Name; got != "waypoint" {
		t.Errorf("waypoint deployments hold %q; only labelled Deployments belong there", got)
	}
	ap := snap.AuthorizationPolicies[0]
	if ap.Spec.Action != secv1.ActionAllow || len(ap.Spec.Rules) != 1 || ap.Spec.Rules[0].To.Ports[0] != 8080 || ap.Spec.Rules[0].From.Namespaces[0] != "web" {
		t.Errorf("AuthorizationPolicy converted wrongly: %+v", ap.Spec)
	}
	if snap.Nodes[0].Labels[corev1.LabelTopologyZone] != "z1" {
		t.Errorf("node labels lost: %v", snap.Nodes[0].Labels)
	}
	for _, o := range []metav1.Object{snap.Pods[0], snap.Gateways[0], ap, snap.WaypointDeployments[0]} {
		if len(o.GetManagedFields()) != 0 {
			t.Errorf("%s keeps managedFields in the cache", o.GetName())
		}
	}

	// Translation sees a changed object after a change signal.
	drain(src)
	p := must(c.cs.CoreV1().Pods("shop").Get(ctx, "echo-1", metav1.GetOptions{}))
	p.Labels["version"] = "v2"
	must(c.cs.CoreV1().Pods("shop").Update(ctx, p, metav1.UpdateOptions{}))
	select {
	case <-src.Changed():
	case <-time.After(wait):
		t.Fatal("no change signalled after a pod update")
	}
	kubetest.Eventually(t, wait, "the updated pod in the snapshot", func() bool {
		ps := src.Snapshot().Pods
		return len(ps) == 1 && ps[0].Labels["version"] == "v2"
	})
}

func drain(src *kube.Source) {
	for {
		select {
		case <-src.Changed():
		default:
			return
		}
	}
}

// looseAuthorizationPolicyCRD serves AuthorizationPolicies without a schema,
// so objects that the Go types cannot hold get stored.
func looseAuthorizationPolicyCRD() *apiextensionsv1.CustomResourceDefinition {
	preserve := true
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: secv1.AuthorizationPolicyResource + "." + secv1.GroupVersion.Group},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: secv1.GroupVersion.Group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: "AuthorizationPolicy", ListKind: "AuthorizationPolicyList", Plural: secv1.AuthorizationPolicyResource, Singular: "authorizationpolicy"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: secv1.GroupVersion.Version, Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: &preserve,
				}},
			}},
		},
	}
}

// TestMissingCRDsThenInstalledAndBadObjectsSkipped starts the source
// against an API server without any CRD: it syncs with the core kinds and
// reports each missing CRD once. Installing the Gateway API CRDs and a
// schema-less AuthorizationPolicy CRD later makes their objects appear
// without a restart; an AuthorizationPolicy that does not convert to the
// Go types is counted and skipped while its neighbours are kept.
func TestMissingCRDsThenInstalledAndBadObjectsSkipped(t *testing.T) {
	env := kubetest.Start(t)
	ctx := t.Context()
	c := newClients(t, ctx, env)
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	src := startSource(t, ctx, env, kube.Options{
		CRDPoll:    200 * time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(logs, nil)),
		Registerer: reg,
	})

	c.namespace("shop", nil)
	c.pod("shop", "echo-1", "10.244.1.10", nil)
	kubetest.Eventually(t, wait, "pod in the snapshot without any CRD", func() bool { return len(src.Snapshot().Pods) == 1 })
	time.Sleep(time.Second) // several discovery polls
	for _, r := range []string{"gateways.gateway.networking.k8s.io", "xbackendtrafficpolicies.gateway.networking.x-k8s.io", "authorizationpolicies.security.warren.io"} {
		if n := strings.Count(logs.String(), "resource="+r+" "); n != 1 {
			t.Errorf("missing CRD %s reported %d times, want once:\n%s", r, n, logs.String())
		}
	}
	if v := gauge(t, reg, "warren_kube_source_crd_missing", "gateways.gateway.networking.k8s.io"); v != 1 {
		t.Errorf("crd_missing gauge for gateways = %v, want 1", v)
	}

	gwDir, err := kubetest.GatewayAPICRDDir()
	if err != nil {
		t.Fatal(err)
	}
	env.InstallCRDs(t, []string{gwDir}, looseAuthorizationPolicyCRD())
	c.gatewayClass(model.WaypointClass, model.WaypointController)
	c.waypoint("shop", "waypoint")
	c.authorizationPolicy("shop", "good", map[string]any{"action": "DENY"})
	c.authorizationPolicy("shop", "bad", map[string]any{"rules": []any{map[string]any{"to": map[string]any{"ports": []any{"eighty"}}}}})
	c.authorizationPolicy("shop", "good-too", map[string]any{"targetRefs": []any{map[string]any{"group": "", "kind": "Namespace", "name": "shop"}}})
	kubetest.Eventually(t, wait, "objects of the newly installed CRDs", func() bool {
		s := src.Snapshot()
		return len(s.Gateways) == 1 && len(s.GatewayClasses) == 1 && len(s.AuthorizationPolicies) == 2
	})
	for _, ap := range src.Snapshot().AuthorizationPolicies {
		if ap.Name == "bad" {
			t.Fatal("an AuthorizationPolicy that does not convert is in the snapshot")
		}
	}
	kubetest.Eventually(t, wait, "conversion error counted", func() bool {
		return counter(t, reg, "warren_kube_source_conversion_errors_total", "authorizationpolicies.security.warren.io") >= 1
	})
	if !strings.Contains(logs.String(), "name=bad") {
		t.Errorf("the skipped object is not named in the log:\n%s", logs.String())
	}
	if v := gauge(t, reg, "warren_kube_source_crd_missing", "gateways.gateway.networking.k8s.io"); v != 0 {
		t.Errorf("crd_missing gauge for gateways = %v after install, want 0", v)
	}
	kubetest.Eventually(t, wait, "source synced with the new informers", src.HasSynced)
}

func metricValue(t *testing.T, reg *prometheus.Registry, name, resource string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "resource" && l.GetValue() == resource {
					return m
				}
			}
		}
	}
	return nil
}

func counter(t *testing.T, reg *prometheus.Registry, name, resource string) float64 {
	if m := metricValue(t, reg, name, resource); m != nil {
		return m.GetCounter().GetValue()
	}
	return -1
}

func gauge(t *testing.T, reg *prometheus.Registry, name, resource string) float64 {
	if m := metricValue(t, reg, name, resource); m != nil {
		return m.GetGauge().GetValue()
	}
	return -1
}
