package status_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	"github.com/warren-mesh/warren/internal/kubetest"
	secv1 "github.com/warren-mesh/warren/istiod-lite/api/security/v1alpha1"
	"github.com/warren-mesh/warren/istiod-lite/deploy"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/kube"
	"github.com/warren-mesh/warren/istiod-lite/status"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

const (
	wait            = 30 * time.Second
	otherController = "example.com/other-controller"
)

// must returns v or panics on err (setup steps only; the panic fails the test).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

var apGVR = secv1.GroupVersion.WithResource(secv1.AuthorizationPolicyResource)

// cluster creates objects in the test's API server.
type cluster struct {
	ctx context.Context
	cs  kubernetes.Interface
	gw  gwclient.Interface
	dyn dynamic.Interface
}

func newCluster(t *testing.T, env *kubetest.Env) *cluster {
	return &cluster{ctx: t.Context(), cs: env.Client, gw: env.GatewayClient(t), dyn: env.DynamicClient(t)}
}

func (c *cluster) namespace(name string, labels map[string]string) {
	must(c.cs.CoreV1().Namespaces().Create(c.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}))
}

// pod creates a ready pod with an IP (set through the status subresource,
// as a kubelet would).
func (c *cluster) pod(ns, name, ip string, labels map[string]string) {
	p := must(c.cs.CoreV1().Pods(ns).Create(c.ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
	}, metav1.CreateOptions{}))
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ip
	p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	must(c.cs.CoreV1().Pods(ns).UpdateStatus(c.ctx, p, metav1.UpdateOptions{}))
}

func (c *cluster) service(ns, name string, selector map[string]string, ports ...corev1.ServicePort) {
	must(c.cs.CoreV1().Services(ns).Create(c.ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Selector: selector, Ports: ports},
	}, metav1.CreateOptions{}))
}

func (c *cluster) gatewayClass(name, controller string) {
	must(c.gw.GatewayV1().GatewayClasses().Create(c.ctx, &gwv1.GatewayClass{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       gwv1.GatewayClassSpec{ControllerName: gwv1.GatewayController(controller)},
	}, metav1.CreateOptions{}))
}

func (c *cluster) gateway(ns, name, class string, l gwv1.Listener) {
	must(c.gw.GatewayV1().Gateways(ns).Create(c.ctx, &gwv1.Gateway{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       gwv1.GatewaySpec{GatewayClassName: gwv1.ObjectName(class), Listeners: []gwv1.Listener{l}},
	}, metav1.CreateOptions{}))
}

func (c *cluster) authorizationPolicy(ns, name string, spec map[string]any) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": secv1.GroupVersion.String(), "kind": "AuthorizationPolicy",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     spec,
	}}
	must(c.dyn.Resource(apGVR).Namespace(ns).Create(c.ctx, u, metav1.CreateOptions{}))
}

func (c *cluster) getAuthorizationPolicy(ns, name string) *secv1.AuthorizationPolicy {
	u := must(c.dyn.Resource(apGVR).Namespace(ns).Get(c.ctx, name, metav1.GetOptions{}))
	ap := &secv1.AuthorizationPolicy{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, ap); err != nil {
		panic(err)
	}
	return ap
}

func serviceRef(name string, port int32) gwv1.ParentReference {
	g, k := gwv1.Group(""), gwv1.Kind("Service")
	ref := gwv1.ParentReference{Group: &g, Kind: &k, Name: gwv1.ObjectName(name)}
	if port != 0 {
		p := gwv1.PortNumber(port)
		ref.Port = &p
	}
	return ref
}

func gatewayRef(name string) gwv1.ParentReference {
	g, k := gwv1.Group(gwv1.GroupName), gwv1.Kind("Gateway")
	return gwv1.ParentReference{Group: &g, Kind: &k, Name: gwv1.ObjectName(name)}
}

func backend(name string, port int32) gwv1.BackendRef {
	p := gwv1.PortNumber(port)
	return gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(name), Port: &p}}
}

func condition(typ string, ok bool, reason, msg string) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, LastTransitionTime: metav1.Now()}
}

// has reports whether conds hold type typ with status ok, reason and
// observedGeneration gen, and a lastTransitionTime.
func has(conds []metav1.Condition, typ string, ok bool, reason string, gen int64) bool {
	c := meta.FindStatusCondition(conds, typ)
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	return c != nil && c.Status == st && c.Reason == reason && c.ObservedGeneration == gen && !c.LastTransitionTime.IsZero()
}

func findParent(ps []gwv1.RouteParentStatus, controller, name string) *gwv1.RouteParentStatus {
	for i := range ps {
		if string(ps[i].ControllerName) == controller && string(ps[i].ParentRef.Name) == name {
			return &ps[i]
		}
	}
	return nil
}

// isStatusWrite matches requests to a status subresource.
func isStatusWrite(path string) bool { return strings.HasSuffix(path, "/status") }

// mesh is the control loop under test, wired as cmd/istiod-lite will wire
// it: source → translate → status writer and waypoint deployer.
type mesh struct {
	src      *kube.Source
	writer   *status.Writer
	deployer *deploy.Deployer
	writes   *kubetest.Requests // the writer's and the deployer's requests
	reg      *prometheus.Registry

	mu     sync.Mutex
	out    *translate.Output
	rounds int
	errs   []error
}

// startMesh runs the loop until the test ends: on every change signal it
// debounces for 50ms, translates a fresh snapshot, writes status and
// updates the deployer.
func startMesh(t *testing.T, env *kubetest.Env) *mesh {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	m := &mesh{reg: prometheus.NewRegistry()}
	var opts kube.Options
	if err := opts.ClientsForConfig(env.Config); err != nil {
		t.Fatal(err)
	}
	opts.CRDPoll = time.Second
	m.src = must(kube.New(opts))
	cfg, writes := kubetest.CountingConfig(env.Config)
	m.writes = writes
	m.writer = must(status.New(status.Options{
		Gateway:    must(gwclient.NewForConfig(cfg)),
		Dynamic:    must(dynamic.NewForConfig(cfg)),
		Registerer: m.reg,
	}))
	m.deployer = must(deploy.New(deploy.Options{
		Client:     must(kubernetes.NewForConfig(cfg)),
		Registerer: m.reg,
		RetryDelay: 500 * time.Millisecond,
	}))
	wg.Go(func() {
		if err := m.src.Start(ctx); err != nil {
			t.Errorf("source: %v", err)
		}
	})
	wg.Go(func() {
		if err := m.deployer.Start(ctx); err != nil {
			t.Errorf("deployer: %v", err)
		}
	})
	kubetest.Eventually(t, wait, "source and deployer synced", func() bool { return m.src.HasSynced() && m.deployer.HasSynced() })
	wg.Go(func() {
		for {
			m.round(ctx)
			select {
			case <-ctx.Done():
				return
			case <-m.src.Changed():
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	return m
}

func (m *mesh) round(ctx context.Context) {
	snap := m.src.Snapshot()
	out := translate.Translate(model.NewIndex(snap))
	err := m.writer.Write(ctx, snap, out.Status)
	m.deployer.Update(snap, out.Waypoints)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.out, m.rounds = out, m.rounds+1
	if err != nil && ctx.Err() == nil {
		m.errs = append(m.errs, err)
	}
}

func (m *mesh) output() (*translate.Output, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.out, m.rounds
}

func (m *mesh) errors() []error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]error(nil), m.errs...)
}

// counter returns a counter of the registry by name and kind label.
func counter(t *testing.T, reg *prometheus.Registry, name, kind string) float64 {
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
				if l.GetName() == "kind" && l.GetValue() == kind {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("metric %s{kind=%q} not found", name, kind)
	return 0
}
