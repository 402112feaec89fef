package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwxv1a1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions"

	secv1 "github.com/warren-mesh/warren/istiod-lite/api/security/v1alpha1"
	"github.com/warren-mesh/warren/istiod-lite/model"
)

// WaypointDeploymentLabel selects the Deployments the source watches: the
// waypoint deployer labels its Deployments with the Gateway's name.
const WaypointDeploymentLabel = "gateway.networking.k8s.io/gateway-name"

// Options configure a Source.
type Options struct {
	// Client reads Namespaces, Pods, Services, EndpointSlices, Nodes and
	// Deployments. Required.
	Client kubernetes.Interface
	// Gateway reads the Gateway API objects. Required.
	Gateway gwclient.Interface
	// Dynamic reads Warren's AuthorizationPolicies. Required.
	Dynamic dynamic.Interface
	// Discovery tells which CRDs are installed. Default Client.Discovery().
	Discovery discovery.DiscoveryInterface
	// Mesh is copied into every Snapshot's Config.
	Mesh model.MeshConfig
	// CRDPoll is how often discovery is asked again for kinds whose CRD is
	// missing. Default 10s.
	CRDPoll time.Duration
	// Logger reports asynchronous problems: missing CRDs, objects that do
	// not convert. Default: discard.
	Logger *slog.Logger
	// Registerer receives the source's metrics. Nil: not registered.
	Registerer prometheus.Registerer
}

// ClientsForConfig fills Client, Gateway and Dynamic from a rest.Config.
func (o *Options) ClientsForConfig(cfg *rest.Config) error {
	var err error
	if o.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return fmt.Errorf("kube source: %w", err)
	}
	if o.Gateway, err = gwclient.NewForConfig(cfg); err != nil {
		return fmt.Errorf("kube source: %w", err)
	}
	if o.Dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return fmt.Errorf("kube source: %w", err)
	}
	return nil
}

// Source watches the API server and builds snapshots from its caches.
type Source struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics

	coreFactory   informers.SharedInformerFactory
	deployFactory informers.SharedInformerFactory
	gwFactory     gwinformers.SharedInformerFactory

	namespaces, pods, services, slices, nodes, deployments cache.SharedIndexInformer

	mu       sync.Mutex
	optional []*optionalKind
	wg       sync.WaitGroup

	started atomic.Bool
	changed chan struct{}
}

// New builds a Source; Start runs it.
func New(opts Options) (*Source, error) {
	if opts.Client == nil || opts.Gateway == nil || opts.Dynamic == nil {
		return nil, errors.New("kube source: Client, Gateway and Dynamic clients are required")
	}
	if opts.Discovery == nil {
		opts.Discovery = opts.Client.Discovery()
	}
	if opts.CRDPoll <= 0 {
		opts.CRDPoll = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Source{opts: opts, log: opts.Logger, metrics: m, changed: make(chan struct{}, 1)}
	strip := informers.WithTransform(stripManagedFields)
	s.coreFactory = informers.NewSharedInformerFactoryWithOptions(opts.Client, 0, strip)
	s.deployFactory = informers.NewSharedInformerFactoryWithOptions(opts.Client, 0, strip,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = WaypointDeploymentLabel }))
	s.gwFactory = gwinformers.NewSharedInformerFactoryWithOptions(opts.Gateway, 0, gwinformers.WithTransform(stripManagedFields))

	s.namespaces = s.coreFactory.Core().V1().Namespaces().Informer()
	s.pods = s.coreFactory.Core().V1().Pods().Informer()
	s.services = s.coreFactory.Core().V1().Services().Informer()
	s.nodes = s.coreFactory.Core().V1().Nodes().Informer()
	s.slices = s.coreFactory.Discovery().V1().EndpointSlices().Informer()
	s.deployments = s.deployFactory.Apps().V1().Deployments().Informer()
	for _, inf := range []cache.SharedIndexInformer{s.namespaces, s.pods, s.services, s.slices, s.deployments} {
		if _, err := inf.AddEventHandler(s.handler(nil)); err != nil {
			return nil, fmt.Errorf("kube source: %w", err)
		}
	}
	if _, err := s.nodes.AddEventHandler(s.handler(nodeRelevant)); err != nil {
		return nil, fmt.Errorf("kube source: %w", err)
	}
	s.optional = s.optionalKinds()
	return s, nil
}

// Name identifies the runner.
func (s *Source) Name() string { return "kube-source" }

// Start runs the informers and the CRD discovery loop until ctx ends, then
// waits for the informers to stop. It returns nil on cancellation.
func (s *Source) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("kube source: already started")
	}
	s.coreFactory.Start(ctx.Done())
	s.deployFactory.Start(ctx.Done())
	defer func() {
		s.coreFactory.Shutdown()
		s.deployFactory.Shutdown()
		s.gwFactory.Shutdown()
		s.wg.Wait()
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		timer.Reset(s.probe(ctx))
	}
}

// HasSynced reports whether every informer has listed once and discovery
// has answered for every optional kind (installed or definitely missing).
func (s *Source) HasSynced() bool {
	if !s.started.Load() {
		return false
	}
	for _, inf := range []cache.SharedIndexInformer{s.namespaces, s.pods, s.services, s.slices, s.nodes, s.deployments} {
		if !inf.HasSynced() {
			return false
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.optional {
		switch k.state {
		case stateUnknown:
			return false
		case stateRunning:
			if !k.informer.HasSynced() {
				return false
			}
		}
	}
	return true
}

// Changed receives a value after any watched object changed (coalesced:
// many changes may give one value). There is one channel for one consumer,
// which is expected to debounce and then call Snapshot.
func (s *Source) Changed() <-chan struct{} { return s.changed }

func (s *Source) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// handler signals a change on every add and delete, and on updates that
// changed the object (resyncs carry the same resourceVersion) and that
// relevant, when set, considers relevant.
func (s *Source) handler(relevant func(oldObj, newObj any) bool) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { s.notify() },
		UpdateFunc: func(oldObj, newObj any) {
			if sameVersion(oldObj, newObj) || (relevant != nil && !relevant(oldObj, newObj)) {
				return
			}
			s.notify()
		},
		DeleteFunc: func(any) { s.notify() },
	}
}

func sameVersion(a, b any) bool {
	ma, err1 := meta.Accessor(a)
	mb, err2 := meta.Accessor(b)
	return err1 == nil && err2 == nil && ma.GetResourceVersion() == mb.GetResourceVersion()
}

// nodeRelevant ignores node status heartbeats: translation reads a node's
// labels (zone) and nothing it reports about its health.
func nodeRelevant(oldObj, newObj any) bool {
	a, ok1 := oldObj.(*corev1.Node)
	b, ok2 := newObj.(*corev1.Node)
	if !ok1 || !ok2 {
		return true
	}
	return !maps.Equal(a.Labels, b.Labels) || !maps.Equal(a.Annotations, b.Annotations) ||
		!equality.Semantic.DeepEqual(a.Spec, b.Spec) || !equality.Semantic.DeepEqual(a.Status.Addresses, b.Status.Addresses)
}

// stripManagedFields drops metadata.managedFields before objects enter the
// caches: translation never reads them and they are often the bulk of an
// object. It is idempotent, as informer transforms must be.
func stripManagedFields(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// Snapshot lists every cache into a new Snapshot. The slices are fresh; the
// objects are the caches' own and must not be modified. Kinds whose CRD is
// missing are empty. TrustBundlePEM is left for the caller to fill.
func (s *Source) Snapshot() *model.Snapshot {
	snap := &model.Snapshot{
		Config:              s.opts.Mesh,
		Namespaces:          list[*corev1.Namespace](s.namespaces),
		Pods:                list[*corev1.Pod](s.pods),
		Services:            list[*corev1.Service](s.services),
		EndpointSlices:      list[*discoveryv1.EndpointSlice](s.slices),
		Nodes:               list[*corev1.Node](s.nodes),
		WaypointDeployments: list[*appsv1.Deployment](s.deployments),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.optional {
		if k.state != stateRunning {
			continue
		}
		switch k.resource {
		case "gatewayclasses":
			snap.GatewayClasses = list[*gwv1.GatewayClass](k.informer)
		case "gateways":
			snap.Gateways = list[*gwv1.Gateway](k.informer)
		case "httproutes":
			snap.HTTPRoutes = list[*gwv1.HTTPRoute](k.informer)
		case "grpcroutes":
			snap.GRPCRoutes = list[*gwv1.GRPCRoute](k.informer)
		case "referencegrants":
			snap.ReferenceGrants = list[*gwv1.ReferenceGrant](k.informer)
		case "xbackendtrafficpolicies":
			snap.BackendTrafficPolicies = list[*gwxv1a1.XBackendTrafficPolicy](k.informer)
		case secv1.AuthorizationPolicyResource:
			// Objects that failed conversion stay unstructured and are skipped.
			snap.AuthorizationPolicies = list[*secv1.AuthorizationPolicy](k.informer)
		}
	}
	return snap
}

// list returns the cache's objects of type T (nil for a nil informer).
func list[T any](inf cache.SharedIndexInformer) []T {
	if inf == nil {
		return nil
	}
	objs := inf.GetStore().List()
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}
