package kube

import (
	"context"
	"fmt"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwxv1a1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"

	secv1 "github.com/warren-mesh/warren/istiod-lite/api/security/v1alpha1"
)

// kindState is what discovery said about an optional kind.
type kindState int

const (
	stateUnknown kindState = iota // not asked yet, or discovery failed
	stateMissing                  // its group/version does not serve it: CRD not installed
	stateRunning                  // informer started
)

// optionalKind is a kind served by a CRD that may not be installed.
type optionalKind struct {
	gv       schema.GroupVersion
	resource string
	// newInformer creates the informer and starts it under ctx.
	newInformer func(ctx context.Context) (cache.SharedIndexInformer, error)

	// Guarded by Source.mu (written only by the probe loop).
	state    kindState
	informer cache.SharedIndexInformer
	reported bool // the missing CRD was logged
}

func (k *optionalKind) name() string { return k.resource + "." + k.gv.Group }

// optionalKinds lists the CRD-backed kinds and how to start their informers.
func (s *Source) optionalKinds() []*optionalKind {
	gw := func(resource string, get func() cache.SharedIndexInformer) *optionalKind {
		return &optionalKind{gv: schema.GroupVersion(gwv1.GroupVersion), resource: resource, newInformer: s.gatewayInformer(get)}
	}
	v1 := s.gwFactory.Gateway().V1()
	return []*optionalKind{
		gw("gatewayclasses", func() cache.SharedIndexInformer { return v1.GatewayClasses().Informer() }),
		gw("gateways", func() cache.SharedIndexInformer { return v1.Gateways().Informer() }),
		gw("httproutes", func() cache.SharedIndexInformer { return v1.HTTPRoutes().Informer() }),
		gw("grpcroutes", func() cache.SharedIndexInformer { return v1.GRPCRoutes().Informer() }),
		gw("referencegrants", func() cache.SharedIndexInformer { return v1.ReferenceGrants().Informer() }),
		{gv: schema.GroupVersion(gwxv1a1.GroupVersion), resource: "xbackendtrafficpolicies", newInformer: s.gatewayInformer(func() cache.SharedIndexInformer {
			return s.gwFactory.Experimental().V1alpha1().XBackendTrafficPolicies().Informer()
		})},
		{gv: secv1.GroupVersion, resource: secv1.AuthorizationPolicyResource, newInformer: s.authorizationPolicyInformer},
	}
}

// gatewayInformer creates a typed Gateway API informer through the shared
// factory and starts it (the factory starts only informers not yet running).
func (s *Source) gatewayInformer(get func() cache.SharedIndexInformer) func(context.Context) (cache.SharedIndexInformer, error) {
	return func(ctx context.Context) (cache.SharedIndexInformer, error) {
		inf := get()
		if _, err := inf.AddEventHandler(s.handler(nil)); err != nil {
			return nil, err
		}
		s.gwFactory.Start(ctx.Done())
		return inf, nil
	}
}

// authorizationPolicyInformer watches Warren's AuthorizationPolicies with a
// dynamic informer whose transform converts each object to the typed
// struct on its way into the cache.
func (s *Source) authorizationPolicyInformer(ctx context.Context) (cache.SharedIndexInformer, error) {
	gvr := secv1.GroupVersion.WithResource(secv1.AuthorizationPolicyResource)
	inf := dynamicinformer.NewFilteredDynamicInformer(s.opts.Dynamic, gvr, "", 0,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, nil).Informer()
	if err := inf.SetTransform(s.convertAuthorizationPolicy); err != nil {
		return nil, err
	}
	if _, err := inf.AddEventHandler(s.handler(nil)); err != nil {
		return nil, err
	}
	s.wg.Go(func() { inf.RunWithContext(ctx) })
	return inf, nil
}

// probe asks discovery about every optional kind not running yet, starts
// the informers of kinds now served, and returns when to probe again.
func (s *Source) probe(ctx context.Context) time.Duration {
	byGV := map[schema.GroupVersion][]*optionalKind{}
	s.mu.Lock()
	for _, k := range s.optional {
		if k.state != stateRunning {
			byGV[k.gv] = append(byGV[k.gv], k)
		}
	}
	s.mu.Unlock()
	gvs := make([]schema.GroupVersion, 0, len(byGV))
	for gv := range byGV {
		gvs = append(gvs, gv)
	}
	sort.Slice(gvs, func(i, j int) bool { return gvs[i].String() < gvs[j].String() })

	next := s.opts.CRDPoll
	for _, gv := range gvs {
		if ctx.Err() != nil {
			return next
		}
		served := map[string]bool{}
		list, err := s.opts.Discovery.ServerResourcesForGroupVersion(gv.String())
		switch {
		case err == nil:
			for _, r := range list.APIResources {
				served[r.Name] = true
			}
		case apierrors.IsNotFound(err):
			// The group/version is not served at all: no CRD of it installed.
		default:
			s.log.Warn("kube source: discovery failed; retrying", "groupVersion", gv.String(), "error", err)
			next = min(next, time.Second)
			continue
		}
		for _, k := range byGV[gv] {
			if !served[k.resource] {
				s.setMissing(k)
				continue
			}
			if err := s.startOptional(ctx, k); err != nil {
				s.log.Warn("kube source: starting informer", "resource", k.name(), "error", err)
				next = min(next, time.Second)
			}
		}
	}
	return next
}

func (s *Source) setMissing(k *optionalKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k.state = stateMissing
	s.metrics.missing.WithLabelValues(k.name()).Set(1)
	if !k.reported {
		k.reported = true
		s.log.Warn("kube source: CRD not installed; its objects are left out until it is", "resource", k.name(), "groupVersion", k.gv.String())
	}
}

func (s *Source) startOptional(ctx context.Context, k *optionalKind) error {
	inf, err := k.newInformer(ctx)
	if err != nil {
		return fmt.Errorf("kube source: %s: %w", k.name(), err)
	}
	s.mu.Lock()
	k.state, k.informer = stateRunning, inf
	wasMissing := k.reported
	s.mu.Unlock()
	s.metrics.missing.WithLabelValues(k.name()).Set(0)
	if wasMissing {
		s.log.Info("kube source: CRD installed; watching it now", "resource", k.name())
	}
	s.notify()
	return nil
}
