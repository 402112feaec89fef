package translate

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/model"
)

// mode is the kind of parent a route is compiled for: mesh (Service
// parents, GEP-1294: cross-namespace backends need no ReferenceGrant) or
// gateway (north-south: they do).
type mode int

const (
	meshMode mode = iota
	gatewayMode
)

// resolveBackend turns a backendRef into a Backend. Unusable references
// still produce a Backend, marked invalid (requests given to it get 500),
// and add a ResolvedRefs problem.
func (t *translator) resolveBackend(r *routeInfo, ref gwv1.BackendObjectReference, weight int32, m mode, refs *problems) *warrenv1.Backend {
	ns := r.ns
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = string(*ref.Namespace)
	}
	group, kind := "", "Service"
	if ref.Group != nil {
		group = string(*ref.Group)
	}
	if ref.Kind != nil {
		kind = string(*ref.Kind)
	}
	b := &warrenv1.Backend{Weight: uint32(max(weight, 0))}
	name := model.Key(ns, string(ref.Name))
	if group != "" || kind != "Service" {
		b.Service = name
		b.Invalid = fmt.Sprintf("backendRef %s: kind %s.%s is not supported (only Service)", name, kind, group)
		refs.add(string(gwv1.RouteReasonInvalidKind), "%s", b.Invalid)
		return b
	}
	if m == gatewayMode && ns != r.ns && !t.granted(r, ns, "", "Service", string(ref.Name)) {
		b.Service = name
		b.Invalid = fmt.Sprintf("backendRef Service %s in another namespace needs a ReferenceGrant in %s", name, ns)
		refs.add(string(gwv1.RouteReasonRefNotPermitted), "%s", b.Invalid)
		return b
	}
	svc := t.ix.Service(ns, string(ref.Name))
	if svc == nil {
		b.Service = ns + "/" + string(ref.Name) + ".svc"
		b.Invalid = fmt.Sprintf("backendRef Service %s not found", name)
		refs.add(string(gwv1.RouteReasonBackendNotFound), "%s", b.Invalid)
		return b
	}
	b.Service = t.serviceKey(svc)
	if ref.Port == nil {
		b.Invalid = fmt.Sprintf("backendRef Service %s: port is required", name)
		refs.add(string(gwv1.RouteReasonUnsupportedValue), "%s", b.Invalid)
		return b
	}
	b.Port = uint32(*ref.Port)
	if !servicePort(svc, int32(*ref.Port)) {
		b.Invalid = fmt.Sprintf("backendRef Service %s has no port %d", name, *ref.Port)
		refs.add(string(gwv1.RouteReasonBackendNotFound), "%s", b.Invalid)
	}
	return b
}

func servicePort(svc *corev1.Service, port int32) bool {
	for _, p := range svc.Spec.Ports {
		if p.Port == port {
			return true
		}
	}
	return false
}

// granted reports whether a ReferenceGrant in toNS allows r's kind in r's
// namespace to reference toGroup/toKind toName.
func (t *translator) granted(r *routeInfo, toNS, toGroup, toKind, toName string) bool {
	for _, g := range t.ix.Grants(toNS) {
		fromOK := false
		for _, f := range g.Spec.From {
			if string(f.Group) == gwv1.GroupName && string(f.Kind) == r.kind && string(f.Namespace) == r.ns {
				fromOK = true
				break
			}
		}
		if !fromOK {
			continue
		}
		for _, to := range g.Spec.To {
			if string(to.Group) == toGroup && string(to.Kind) == toKind && (to.Name == nil || string(*to.Name) == toName) {
				return true
			}
		}
	}
	return false
}
