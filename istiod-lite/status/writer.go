package status

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwxv1a1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"

	secv1 "github.com/warren-mesh/warren/istiod-lite/api/security/v1alpha1"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// Options configure a Writer.
type Options struct {
	// Gateway writes Gateway API status. Required.
	Gateway gwclient.Interface
	// Dynamic writes AuthorizationPolicy status. Required.
	Dynamic dynamic.Interface
	// Now is the clock for lastTransitionTime. Default time.Now.
	Now func() time.Time
	// ConflictBackoff paces the re-read-and-retry after a conflict. Default
	// retry.DefaultRetry (5 steps from 10ms).
	ConflictBackoff wait.Backoff
	// RetryDelay is how long the runner waits before retrying a pass that
	// failed. Default 5s.
	RetryDelay time.Duration
	// Logger reports the runner's failed passes. Default: discard.
	Logger *slog.Logger
	// Registerer receives the writer's metrics. Nil: not registered.
	Registerer prometheus.Registerer
}

// Writer writes translated status to the API server. Write is one
// synchronous pass; the runner (Start, Enqueue) writes the latest enqueued
// status in the background and retries failed passes.
type Writer struct {
	opts    Options
	metrics *metrics

	mu      sync.Mutex
	pending *job
	kick    chan struct{}
}

type job struct {
	current *model.Snapshot
	desired translate.Status
}

// New builds a Writer.
func New(opts Options) (*Writer, error) {
	if opts.Gateway == nil || opts.Dynamic == nil {
		return nil, errors.New("status: Gateway and Dynamic clients are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ConflictBackoff.Steps == 0 {
		opts.ConflictBackoff = retry.DefaultRetry
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Writer{opts: opts, metrics: m, kick: make(chan struct{}, 1)}, nil
}

// errSkip ends an update without writing: the object's spec changed since
// the translation, whose result is therefore stale.
var errSkip = errors.New("status: skip")

// Write makes the objects of current carry desired, writing only objects
// whose status differs. current is the snapshot desired was translated
// from: its objects are the starting point of each comparison (a conflict
// makes a fresh read). Objects missing from current or gone from the API
// server are skipped. Route parents and policy ancestors of Warren's that
// desired no longer lists are removed, so every route and
// XBackendTrafficPolicy of current is looked at. Errors of single objects
// are joined; the others are still written.
func (w *Writer) Write(ctx context.Context, current *model.Snapshot, desired translate.Status) error {
	now := metav1.NewTime(w.opts.Now().Truncate(time.Second))
	var errs []error
	for _, gc := range current.GatewayClasses {
		if want, ok := desired.GatewayClasses[gc.Name]; ok {
			errs = append(errs, w.gatewayClass(ctx, gc, want, now))
		}
	}
	for _, gw := range current.Gateways {
		if want, ok := desired.Gateways[model.Key(gw.Namespace, gw.Name)]; ok {
			errs = append(errs, w.gateway(ctx, gw, want, now))
		}
	}
	for _, r := range current.HTTPRoutes {
		errs = append(errs, w.httpRoute(ctx, r, desired.HTTPRoutes[model.Key(r.Namespace, r.Name)], now))
	}
	for _, r := range current.GRPCRoutes {
		errs = append(errs, w.grpcRoute(ctx, r, desired.GRPCRoutes[model.Key(r.Namespace, r.Name)], now))
	}
	for _, p := range current.BackendTrafficPolicies {
		errs = append(errs, w.backendTrafficPolicy(ctx, p, desired.BackendTrafficPolicies[model.Key(p.Namespace, p.Name)], now))
	}
	for _, ap := range current.AuthorizationPolicies {
		if want, ok := desired.AuthorizationPolicies[model.Key(ap.Namespace, ap.Name)]; ok {
			errs = append(errs, w.authorizationPolicy(ctx, ap, want, now))
		}
	}
	return errors.Join(errs...)
}

// object is what update needs of any API object.
type object interface {
	GetGeneration() int64
	GetNamespace() string
	GetName() string
}

// update is one object's read-modify-write. The first attempt starts from
// cached (the snapshot's object); after a conflict get reads the object
// afresh. next returns the object to write, or false when its status is
// already right. An object that is gone, or whose generation moved on
// since cached, is skipped.
func update[T object](ctx context.Context, w *Writer, kind string, cached T, get func(context.Context) (T, error), next func(T) (T, bool), put func(context.Context, T) error) error {
	obj, fresh := cached, false
	err := retry.RetryOnConflict(w.opts.ConflictBackoff, func() error {
		if fresh {
			o, err := get(ctx)
			if err != nil {
				return err
			}
			if o.GetGeneration() != cached.GetGeneration() {
				return errSkip
			}
			obj = o
		}
		fresh = true
		out, changed := next(obj)
		if !changed {
			return nil
		}
		err := put(ctx, out)
		switch {
		case err == nil:
			w.metrics.writes.WithLabelValues(kind).Inc()
		case apierrors.IsConflict(err):
			w.metrics.conflicts.WithLabelValues(kind).Inc()
		}
		return err
	})
	switch {
	case err == nil, errors.Is(err, errSkip), apierrors.IsNotFound(err):
		return nil
	}
	w.metrics.errors.WithLabelValues(kind).Inc()
	return fmt.Errorf("status: %s %s: %w", kind, model.Key(cached.GetNamespace(), cached.GetName()), err)
}

func (w *Writer) gatewayClass(ctx context.Context, gc *gwv1.GatewayClass, want []metav1.Condition, now metav1.Time) error {
	api := w.opts.Gateway.GatewayV1().GatewayClasses()
	return update(ctx, w, KindGatewayClass, gc,
		func(ctx context.Context) (*gwv1.GatewayClass, error) {
			return api.Get(ctx, gc.Name, metav1.GetOptions{})
		},
		func(cur *gwv1.GatewayClass) (*gwv1.GatewayClass, bool) {
			conds := MergeConditions(cur.Status.Conditions, want, now)
			if equality.Semantic.DeepEqual(conds, cur.Status.Conditions) {
				return nil, false
			}
			out := cur.DeepCopy()
			out.Status.Conditions = conds
			return out, true
		},
		func(ctx context.Context, o *gwv1.GatewayClass) error {
			_, err := api.UpdateStatus(ctx, o, metav1.UpdateOptions{})
			return err
		})
}

func (w *Writer) gateway(ctx context.Context, gw *gwv1.Gateway, want gwv1.GatewayStatus, now metav1.Time) error {
	api := w.opts.Gateway.GatewayV1().Gateways(gw.Namespace)
	return update(ctx, w, KindGateway, gw,
		func(ctx context.Context) (*gwv1.Gateway, error) { return api.Get(ctx, gw.Name, metav1.GetOptions{}) },
		func(cur *gwv1.Gateway) (*gwv1.Gateway, bool) {
			st := MergeGateway(cur.Status, want, now)
			if equality.Semantic.DeepEqual(st, cur.Status) {
				return nil, false
			}
			out := cur.DeepCopy()
			out.Status = st
			return out, true
		},
		func(ctx context.Context, o *gwv1.Gateway) error {
			_, err := api.UpdateStatus(ctx, o, metav1.UpdateOptions{})
			return err
		})
}

func (w *Writer) httpRoute(ctx context.Context, r *gwv1.HTTPRoute, want []gwv1.RouteParentStatus, now metav1.Time) error {
	if len(want) == 0 && !hasWarrenParent(r.Status.Parents) {
		return nil // nothing of ours to write or remove
	}
	api := w.opts.Gateway.GatewayV1().HTTPRoutes(r.Namespace)
	return update(ctx, w, KindHTTPRoute, r,
		func(ctx context.Context) (*gwv1.HTTPRoute, error) { return api.Get(ctx, r.Name, metav1.GetOptions{}) },
		func(cur *gwv1.HTTPRoute) (*gwv1.HTTPRoute, bool) {
			parents := MergeRouteParents(cur.Status.Parents, want, now)
			if equality.Semantic.DeepEqual(parents, cur.Status.Parents) {
				return nil, false
			}
			out := cur.DeepCopy()
			out.Status.Parents = parents
			return out, true
		},
		func(ctx context.Context, o *gwv1.HTTPRoute) error {
			_, err := api.UpdateStatus(ctx, o, metav1.UpdateOptions{})
			return err
		})
}

func (w *Writer) grpcRoute(ctx context.Context, r *gwv1.GRPCRoute, want []gwv1.RouteParentStatus, now metav1.Time) error {
	if len(want) == 0 && !hasWarrenParent(r.Status.Parents) {
		return nil
	}
	api := w.opts.Gateway.GatewayV1().GRPCRoutes(r.Namespace)
	return update(ctx, w, KindGRPCRoute, r,
		func(ctx context.Context) (*gwv1.GRPCRoute, error) { return api.Get(ctx, r.Name, metav1.GetOptions{}) },
		func(cur *gwv1.GRPCRoute) (*gwv1.GRPCRoute, bool) {
			parents := MergeRouteParents(cur.Status.Parents, want, now)
			if equality.Semantic.DeepEqual(parents, cur.Status.Parents) {
				return nil, false
			}
			out := cur.DeepCopy()
			out.Status.Parents = parents
			return out, true
		},
		func(ctx context.Context, o *gwv1.GRPCRoute) error {
			_, err := api.UpdateStatus(ctx, o, metav1.UpdateOptions{})
			return err
		})
}

func hasWarrenParent(ps []gwv1.RouteParentStatus) bool {
	for _, p := range ps {
		if isWarren(string(p.ControllerName)) {
			return true
		}
	}
	return false
}

func (w *Writer) backendTrafficPolicy(ctx context.Context, p *gwxv1a1.XBackendTrafficPolicy, want []gwv1.PolicyAncestorStatus, now metav1.Time) error {
	ours := false
	for _, a := range p.Status.Ancestors {
		ours = ours || isWarren(string(a.ControllerName))
	}
	if len(want) == 0 && !ours {
		return nil
	}
	api := w.opts.Gateway.ExperimentalV1alpha1().XBackendTrafficPolicies(p.Namespace)
	return update(ctx, w, KindBackendTrafficPolicy, p,
		func(ctx context.Context) (*gwxv1a1.XBackendTrafficPolicy, error) {
			return api.Get(ctx, p.Name, metav1.GetOptions{})
		},
		func(cur *gwxv1a1.XBackendTrafficPolicy) (*gwxv1a1.XBackendTrafficPolicy, bool) {
			anc := MergePolicyAncestors(cur.Status.Ancestors, want, now)
			if equality.Semantic.DeepEqual(anc, cur.Status.Ancestors) {
				return nil, false
			}
			out := cur.DeepCopy()
			out.Status.Ancestors = anc
			return out, true
		},
		func(ctx context.Context, o *gwxv1a1.XBackendTrafficPolicy) error {
			_, err := api.UpdateStatus(ctx, o, metav1.UpdateOptions{})
			return err
		})
}

// authorizationPolicyGVR is the resource of Warren's AuthorizationPolicy.
var authorizationPolicyGVR = secv1.GroupVersion.WithResource(secv1.AuthorizationPolicyResource)

// authorizationPolicy writes through the dynamic client: the typed object is
// converted to unstructured for the update and a fresh read back to typed.
func (w *Writer) authorizationPolicy(ctx context.Context, ap *secv1.AuthorizationPolicy, want []metav1.Condition, now metav1.Time) error {
	api := w.opts.Dynamic.Resource(authorizationPolicyGVR).Namespace(ap.Namespace)
	return update(ctx, w, KindAuthorizationPolicy, ap,
		func(ctx context.Context) (*secv1.AuthorizationPolicy, error) {
			u, err := api.Get(ctx, ap.Name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			out := &secv1.AuthorizationPolicy{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
				return nil, fmt.Errorf("convert: %w", err)
			}
			return out, nil
		},
		func(cur *secv1.AuthorizationPolicy) (*secv1.AuthorizationPolicy, bool) {
			conds := MergeConditions(cur.Status.Conditions, want, now)
			if equality.Semantic.DeepEqual(conds, cur.Status.Conditions) {
				return nil, false
			}
			out := cur.DeepCopy()
			out.Status.Conditions = conds
			return out, true
		},
		func(ctx context.Context, o *secv1.AuthorizationPolicy) error {
			m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
			if err != nil {
				return fmt.Errorf("convert: %w", err)
			}
			u := &unstructured.Unstructured{Object: m}
			u.SetAPIVersion(secv1.GroupVersion.String())
			u.SetKind("AuthorizationPolicy")
			_, err = api.UpdateStatus(ctx, u, metav1.UpdateOptions{})
			return err
		})
}
