package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// FieldManager is the server-side apply field manager of everything the
// deployer writes.
const FieldManager = "istiod-lite"

// Options configure a Deployer.
type Options struct {
	// Client writes ServiceAccounts, Services and Deployments. Required.
	Client kubernetes.Interface
	// Image of the waypoint container. Default "warren/waypoint:dev".
	Image string
	// PullPolicy of the image. Default IfNotPresent.
	PullPolicy corev1.PullPolicy
	// XDSAddress is istiod-lite's xDS endpoint the waypoint dials.
	// Default "istiod-lite.warren-system.svc:15012".
	XDSAddress string
	// CAAddress is the CA endpoint. Default XDSAddress (one port serves both).
	CAAddress string
	// Replicas of each waypoint Deployment. Default 1.
	Replicas int32
	// Resync is the period of a full comparison even without events.
	// Default 10m.
	Resync time.Duration
	// RetryDelay is the wait before retrying a failed reconcile. Default 5s.
	RetryDelay time.Duration
	// Logger reports failed reconciles. Default: discard.
	Logger *slog.Logger
	// Registerer receives the deployer's metrics. Nil: not registered.
	Registerer prometheus.Registerer
}

func (o *Options) defaults() {
	if o.Image == "" {
		o.Image = "warren/waypoint:dev"
	}
	if o.PullPolicy == "" {
		o.PullPolicy = corev1.PullIfNotPresent
	}
	if o.XDSAddress == "" {
		o.XDSAddress = "istiod-lite.warren-system.svc:15012"
	}
	if o.CAAddress == "" {
		o.CAAddress = o.XDSAddress
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Resync <= 0 {
		o.Resync = 10 * time.Minute
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Deployer runs the waypoints translation asks for: per waypoint Gateway a
// ServiceAccount, a Service and a Deployment, named after the Gateway,
// owned by it, applied server-side, corrected when they drift, and deleted
// when the Gateway no longer needs them.
type Deployer struct {
	opts    Options
	metrics *metrics

	factory              informers.SharedInformerFactory
	saInf, svcInf, dpInf cache.SharedIndexInformer

	mu      sync.Mutex
	desired map[string]Waypoint // by ns/name; nil until the first Update
	kick    chan struct{}

	// applied remembers, per object, the hash of what was last applied and
	// a fingerprint of the object the API server returned, so an unchanged
	// desired state against an unchanged object costs no request. Only the
	// runner goroutine touches it.
	applied map[string]appliedState
}

type appliedState struct{ hash, fingerprint string }

// New builds a Deployer; Start runs it.
func New(opts Options) (*Deployer, error) {
	if opts.Client == nil {
		return nil, errors.New("deploy: Client is required")
	}
	opts.defaults()
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	d := &Deployer{opts: opts, metrics: m, kick: make(chan struct{}, 1), applied: map[string]appliedState{}}
	d.factory = informers.NewSharedInformerFactoryWithOptions(opts.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = LabelManagedBy + "=" + ManagedBy + "," + LabelGatewayName
		}))
	d.saInf = d.factory.Core().V1().ServiceAccounts().Informer()
	d.svcInf = d.factory.Core().V1().Services().Informer()
	d.dpInf = d.factory.Apps().V1().Deployments().Informer()
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { d.trigger() },
		UpdateFunc: func(any, any) { d.trigger() },
		DeleteFunc: func(any) { d.trigger() },
	}
	for _, inf := range []cache.SharedIndexInformer{d.saInf, d.svcInf, d.dpInf} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, fmt.Errorf("deploy: %w", err)
		}
	}
	return d, nil
}

// Name identifies the runner.
func (d *Deployer) Name() string { return "waypoint-deployer" }

// HasSynced reports whether the deployer's caches of its own objects are
// filled.
func (d *Deployer) HasSynced() bool {
	return d.saInf.HasSynced() && d.svcInf.HasSynced() && d.dpInf.HasSynced()
}

// Update sets the waypoints to run, from a translation of current. Each
// Waypoint's Gateway is looked up in current for its UID (the owner
// reference); waypoints whose Gateway is not there are left out. Nothing is
// deleted before the first Update, so call it only with a snapshot of a
// synced source.
func (d *Deployer) Update(current *model.Snapshot, waypoints []translate.Waypoint) {
	gws := map[string]*gwv1.Gateway{}
	for _, g := range current.Gateways {
		gws[model.Key(g.Namespace, g.Name)] = g
	}
	want := map[string]Waypoint{}
	for _, w := range waypoints {
		if g := gws[model.Key(w.Namespace, w.Name)]; g != nil && g.DeletionTimestamp == nil {
			want[model.Key(w.Namespace, w.Name)] = Waypoint{Waypoint: w, GatewayUID: g.UID}
		}
	}
	d.mu.Lock()
	d.desired = want
	d.mu.Unlock()
	d.trigger()
}

func (d *Deployer) trigger() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Start runs the caches and reconciles on every Update, on every change to
// an object it manages (drift), periodically, and after failures, until
// ctx ends.
func (d *Deployer) Start(ctx context.Context) error {
	d.factory.Start(ctx.Done())
	defer d.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), d.HasSynced) {
		return nil
	}
	resync := time.NewTicker(d.opts.Resync)
	defer resync.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-d.kick:
		case <-resync.C:
		case <-retry.C:
		}
		retry.Stop()
		if err := d.reconcile(ctx); err != nil && ctx.Err() == nil {
			d.opts.Logger.Warn("deploy: reconciling waypoints failed; will retry", "error", err, "retryIn", d.opts.RetryDelay)
			retry.Reset(d.opts.RetryDelay)
		}
	}
}

// reconcile applies what is missing or drifted and deletes what is no
// longer wanted.
func (d *Deployer) reconcile(ctx context.Context) error {
	d.mu.Lock()
	desired := d.desired
	d.mu.Unlock()
	if desired == nil {
		return nil // no translation yet: never delete on a guess
	}
	keys := make([]string, 0, len(desired))
	for k := range desired {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		w := desired[k]
		errs = append(errs,
			apply(ctx, d, kindServiceAccount, w, d.saInf, d.opts.ServiceAccount(w), rvFingerprint,
				func(ctx context.Context) (*corev1.ServiceAccount, error) {
					return d.opts.Client.CoreV1().ServiceAccounts(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
				},
				func(ctx context.Context) (*corev1.ServiceAccount, error) {
					return d.opts.Client.CoreV1().ServiceAccounts(w.Namespace).Apply(ctx, d.opts.ServiceAccount(w), applyOptions)
				}),
			apply(ctx, d, kindService, w, d.svcInf, d.opts.Service(w), rvFingerprint,
				func(ctx context.Context) (*corev1.Service, error) {
					return d.opts.Client.CoreV1().Services(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
				},
				func(ctx context.Context) (*corev1.Service, error) {
					return d.opts.Client.CoreV1().Services(w.Namespace).Apply(ctx, d.opts.Service(w), applyOptions)
				}),
			apply(ctx, d, kindDeployment, w, d.dpInf, d.opts.Deployment(w), deploymentFingerprint,
				func(ctx context.Context) (*appsv1.Deployment, error) {
					return d.opts.Client.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
				},
				func(ctx context.Context) (*appsv1.Deployment, error) {
					return d.opts.Client.AppsV1().Deployments(w.Namespace).Apply(ctx, d.opts.Deployment(w), applyOptions)
				}),
		)
	}
	errs = append(errs,
		prune(ctx, d, kindDeployment, d.dpInf, desired, func(ctx context.Context, ns, name string, o metav1.DeleteOptions) error {
			return d.opts.Client.AppsV1().Deployments(ns).Delete(ctx, name, o)
		}),
		prune(ctx, d, kindService, d.svcInf, desired, func(ctx context.Context, ns, name string, o metav1.DeleteOptions) error {
			return d.opts.Client.CoreV1().Services(ns).Delete(ctx, name, o)
		}),
		prune(ctx, d, kindServiceAccount, d.saInf, desired, func(ctx context.Context, ns, name string, o metav1.DeleteOptions) error {
			return d.opts.Client.CoreV1().ServiceAccounts(ns).Delete(ctx, name, o)
		}),
	)
	return errors.Join(errs...)
}

var applyOptions = metav1.ApplyOptions{FieldManager: FieldManager, Force: true}

// apply server-side applies one object unless the same configuration was
// applied before and the live object has not changed since (by
// fingerprint). When the cache has no such object, get checks that no
// object of that name that the deployer does not manage is in the way
// (such an object is left alone and reported).
func apply[T metav1.Object](ctx context.Context, d *Deployer, kind string, w Waypoint, inf cache.SharedIndexInformer, config any, fingerprint func(T) string, get, do func(context.Context) (T, error)) error {
	id := kind + "/" + w.key()
	b, err := json.Marshal(config)
	if err != nil {
		return fmt.Errorf("deploy: %s: %w", id, err)
	}
	sum := sha256.Sum256(b)
	hash := hex.EncodeToString(sum[:])
	if o, ok, _ := inf.GetStore().GetByKey(w.key()); ok {
		if prev, ok := d.applied[id]; ok && prev.hash == hash && prev.fingerprint == fingerprint(o.(T)) {
			return nil
		}
	} else {
		// The cache holds only managed objects: make sure no one else's
		// object of that name is in the way before creating ours.
		live, err := get(ctx)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			d.metrics.errors.WithLabelValues(kind).Inc()
			return fmt.Errorf("deploy: get %s: %w", id, err)
		case live.GetLabels()[LabelManagedBy] != ManagedBy:
			d.metrics.errors.WithLabelValues(kind).Inc()
			return fmt.Errorf("deploy: %s exists and is not managed by %s; leaving it alone", id, ManagedBy)
		}
	}
	out, err := do(ctx)
	if err != nil {
		d.metrics.errors.WithLabelValues(kind).Inc()
		delete(d.applied, id)
		return fmt.Errorf("deploy: apply %s: %w", id, err)
	}
	d.metrics.applies.WithLabelValues(kind).Inc()
	d.applied[id] = appliedState{hash: hash, fingerprint: fingerprint(out)}
	return nil
}

// prune deletes managed objects whose waypoint is no longer desired. The
// Gateway's ownerReference would let the garbage collector do it, but only
// where one runs and only once the Gateway is gone; a Gateway that merely
// stopped being a waypoint (class changed) keeps existing.
func prune(ctx context.Context, d *Deployer, kind string, inf cache.SharedIndexInformer, desired map[string]Waypoint, del func(context.Context, string, string, metav1.DeleteOptions) error) error {
	var errs []error
	for _, o := range inf.GetStore().List() {
		m, ok := o.(metav1.Object)
		if !ok || m.GetLabels()[LabelManagedBy] != ManagedBy || m.GetDeletionTimestamp() != nil {
			continue
		}
		key := model.Key(m.GetNamespace(), m.GetName())
		if _, want := desired[key]; want {
			continue
		}
		uid := m.GetUID()
		policy := metav1.DeletePropagationBackground
		err := del(ctx, m.GetNamespace(), m.GetName(), metav1.DeleteOptions{
			Preconditions:     &metav1.Preconditions{UID: &uid},
			PropagationPolicy: &policy,
		})
		delete(d.applied, kind+"/"+key)
		switch {
		case err == nil:
			d.metrics.deletes.WithLabelValues(kind).Inc()
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			// Gone already, or replaced by a new object the next pass judges.
		default:
			d.metrics.errors.WithLabelValues(kind).Inc()
			errs = append(errs, fmt.Errorf("deploy: delete %s/%s: %w", kind, key, err))
		}
	}
	return errors.Join(errs...)
}

// rvFingerprint: any change to a ServiceAccount or Service is worth a
// (usually no-op) re-apply; they change rarely.
func rvFingerprint[T metav1.Object](o T) string { return o.GetResourceVersion() }

// deploymentFingerprint ignores status updates (frequent): spec changes
// move the generation; metadata is compared as well.
func deploymentFingerprint(o *appsv1.Deployment) string {
	b, _ := json.Marshal(struct {
		Generation  int64
		Labels      map[string]string
		Annotations map[string]string
		Owners      []metav1.OwnerReference
	}{o.Generation, o.Labels, o.Annotations, o.OwnerReferences})
	return string(b)
}
