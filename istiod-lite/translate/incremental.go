package translate

import (
	"maps"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/model"
)

// Change names one object that changed (added, updated or deleted) since
// the previous snapshot.
type Change struct {
	// Kind is the object's kind: Pod, HTTPRoute, GRPCRoute, Service, ...
	Kind      string
	Namespace string
	Name      string
}

// Incremental translates a stream of snapshots, recomputing only what a
// change touches when it can:
//   - Pod changes recompute those pods' Workloads (nothing else reads pods:
//     routes, services, policies and Gateway status do not depend on them);
//   - HTTPRoute/GRPCRoute changes recompute route status, the L7 tables and
//     Gateway listener counts, and reuse Workloads, Services and policies;
//   - anything else, or an unknown history, translates from scratch.
//
// The result is identical to Translate on the same snapshot (tested).
type Incremental struct {
	prev *translator
}

// Scope says how much an update recomputed.
type Scope string

// Scopes of an update.
const (
	ScopeFull   Scope = "full"
	ScopePods   Scope = "pods"
	ScopeRoutes Scope = "routes"
)

// Translate returns the output for snap, given the changes since the
// previous call.
func (inc *Incremental) Translate(snap *model.Snapshot, changes []Change) (*Output, Scope) {
	ix := model.NewIndex(snap)
	scope := classify(changes)
	if inc.prev == nil || scope == ScopeFull {
		inc.prev = translateAll(ix)
		return inc.prev.out, ScopeFull
	}
	prev := inc.prev
	t := &translator{ix: ix, backendPolicies: prev.backendPolicies, authz: prev.authz}
	o := *prev.out
	t.out = &o
	switch scope {
	case ScopePods:
		t.out.Workloads = maps.Clone(prev.out.Workloads)
		changed := map[string]bool{}
		for _, c := range changes {
			changed[model.Key(c.Namespace, c.Name)] = true
			delete(t.out.Workloads, model.Key(c.Namespace, c.Name))
		}
		t.out.Diagnostics = nil
		for _, d := range prev.out.Diagnostics {
			if d.Kind != "Pod" || !changed[model.Key(d.Namespace, d.Name)] {
				t.out.Diagnostics = append(t.out.Diagnostics, d)
			}
		}
		for _, p := range ix.Pods {
			if changed[model.Key(p.Namespace, p.Name)] {
				if w := t.workload(p); w != nil {
					t.out.Workloads[w.Uid] = w
				}
			}
		}
		sortDiagnostics(t.out.Diagnostics)
		t.routeList, t.listeners = prev.routeList, prev.listeners
	case ScopeRoutes:
		t.out.L7Services = map[string]*warrenv1.L7Service{}
		t.out.Status.HTTPRoutes = map[string][]gwv1.RouteParentStatus{}
		t.out.Status.GRPCRoutes = map[string][]gwv1.RouteParentStatus{}
		t.out.Status.Gateways = map[string]gwv1.GatewayStatus{}
		t.out.Waypoints = nil
		t.gateways()
		t.routes()
		t.l7Services()
		t.gatewayStatus()
	}
	inc.prev = t
	return t.out, scope
}

// classify returns the narrowest scope covering every change.
func classify(changes []Change) Scope {
	if len(changes) == 0 {
		return ScopeFull
	}
	pods, routes := true, true
	for _, c := range changes {
		switch c.Kind {
		case "Pod":
			routes = false
		case kindHTTPRoute, kindGRPCRoute:
			pods = false
		default:
			return ScopeFull
		}
	}
	switch {
	case pods:
		return ScopePods
	case routes:
		return ScopeRoutes
	}
	return ScopeFull
}
