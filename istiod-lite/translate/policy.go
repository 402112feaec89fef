package translate

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwxv1a1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"

	secv1 "github.com/warren-mesh/warren/istiod-lite/api/security/v1alpha1"
	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/model"
)

// Policy condition types and reasons (GEP-713 style).
const (
	PolicyAccepted       = "Accepted"
	PolicyEnforced       = "warren.io/Enforced"
	ReasonTargetNotFound = "TargetNotFound"
	ReasonInvalid        = "Invalid"
	ReasonConflicted     = "Conflicted"
)

// authzIndex says which Authorization resources apply where.
type authzIndex struct {
	byNamespace map[string][]string // enforced by ztunnel on every workload of the namespace
	byService   map[string][]string // by Service ns/name without a waypoint: ztunnel on its workloads
	// byServiceWaypoint: by Service ns/name with a waypoint: that waypoint
	byServiceWaypoint map[string][]string
	byWaypoint        map[string][]string // by waypoint Gateway ns/name: the waypoint, for all its traffic
}

func (t *translator) authorizationPolicies() {
	t.authz = authzIndex{byNamespace: map[string][]string{}, byService: map[string][]string{}, byServiceWaypoint: map[string][]string{}, byWaypoint: map[string][]string{}}
	for _, ap := range t.ix.AuthorizationPolicies {
		key := model.Key(ap.Namespace, ap.Name)
		gen := ap.Generation
		res, problem := authorization(ap)
		if problem != "" {
			t.out.Status.AuthorizationPolicies[key] = []metav1.Condition{cond(PolicyAccepted, false, ReasonInvalid, problem, gen)}
			continue
		}
		targets := ap.Spec.TargetRefs
		if len(targets) == 0 {
			targets = []secv1.TargetRef{{Group: "", Kind: "Namespace", Name: ap.Namespace}}
		}
		var where []string
		var bad problems
		for _, tr := range targets {
			switch {
			case tr.Group == "" && tr.Kind == "Namespace":
				if tr.Name != ap.Namespace {
					bad.add(ReasonInvalid, "targetRef Namespace %q: a policy may only target its own namespace %q", tr.Name, ap.Namespace)
					continue
				}
				t.authz.byNamespace[ap.Namespace] = append(t.authz.byNamespace[ap.Namespace], key)
				where = append(where, "ztunnel on every workload of namespace "+ap.Namespace)
			case tr.Group == "" && tr.Kind == "Service":
				svc := t.ix.Service(ap.Namespace, tr.Name)
				if svc == nil {
					bad.add(ReasonTargetNotFound, "targetRef Service %s not found", model.Key(ap.Namespace, tr.Name))
					continue
				}
				// A Service with a waypoint has its policies enforced there
				// (where L7 conditions can be evaluated and the caller is the
				// real client); ztunnel on the Service's pods would see the
				// waypoint as the caller. Without a waypoint, ztunnel on the
				// pods enforces the L4 part.
				sk := model.Key(svc.Namespace, svc.Name)
				if b := t.ix.WaypointForService(svc); b.Gateway != nil {
					t.authz.byServiceWaypoint[sk] = append(t.authz.byServiceWaypoint[sk], key)
					where = append(where, "waypoint "+model.Key(b.Gateway.Namespace, b.Gateway.Name)+" for Service "+sk)
				} else {
					t.authz.byService[sk] = append(t.authz.byService[sk], key)
					where = append(where, "ztunnel on the workloads of Service "+sk+" (no waypoint)")
				}
			case tr.Group == gwv1.GroupName && tr.Kind == "Gateway":
				gw := t.ix.Gateway(ap.Namespace, tr.Name)
				if gw == nil || string(gw.Spec.GatewayClassName) != model.WaypointClass {
					bad.add(ReasonTargetNotFound, "targetRef Gateway %s is not a waypoint (class %s) in this namespace", model.Key(ap.Namespace, tr.Name), model.WaypointClass)
					continue
				}
				gk := model.Key(gw.Namespace, gw.Name)
				t.authz.byWaypoint[gk] = append(t.authz.byWaypoint[gk], key)
				where = append(where, "waypoint "+gk)
			default:
				bad.add(ReasonInvalid, "targetRef %s %s: only Namespace, Service (group \"\") and waypoint Gateway (group %s) are supported", tr.Kind, tr.Name, gwv1.GroupName)
			}
		}
		var conds []metav1.Condition
		if len(where) == 0 {
			conds = append(conds, cond(PolicyAccepted, false, bad.reason, bad.message(), gen))
			t.out.Status.AuthorizationPolicies[key] = conds
			continue
		}
		msg := "Policy accepted"
		if !bad.empty() {
			msg += "; ignored: " + bad.message()
		}
		conds = append(conds, cond(PolicyAccepted, true, "Accepted", msg, gen))
		enforced := "enforced by " + strings.Join(where, "; ")
		if res.L7 && onlyZtunnel(where) {
			enforced += "; its method/path/header conditions need a waypoint: ztunnel fails closed (ALLOW rules with them never match, DENY rules match on their other conditions)"
		}
		conds = append(conds, cond(PolicyEnforced, true, "Enforced", enforced, gen))
		t.out.Status.AuthorizationPolicies[key] = conds
		t.out.Authorizations[key] = res
	}
}

func onlyZtunnel(where []string) bool {
	for _, w := range where {
		if strings.Contains(w, "waypoint") {
			return false
		}
	}
	return true
}

// authorization converts and validates a policy's rules.
func authorization(ap *secv1.AuthorizationPolicy) (*warrenv1.Authorization, string) {
	res := &warrenv1.Authorization{Name: ap.Name, Namespace: ap.Namespace}
	switch ap.Spec.Action {
	case "", secv1.ActionAllow:
	case secv1.ActionDeny:
		res.Action = warrenv1.Authorization_DENY
	default:
		return nil, fmt.Sprintf("spec.action: %q is not ALLOW or DENY", ap.Spec.Action)
	}
	for i, r := range ap.Spec.Rules {
		where := fmt.Sprintf("spec.rules[%d]", i)
		out := &warrenv1.AuthorizationRule{}
		if f := r.From; f != nil {
			for _, id := range append(append([]string(nil), f.Identities...), f.NotIdentities...) {
				if !strings.HasPrefix(id, "spiffe://") {
					return nil, fmt.Sprintf("%s.from: identity %q is not a spiffe:// ID", where, id)
				}
			}
			out.Identities, out.NotIdentities = f.Identities, f.NotIdentities
			out.Namespaces, out.NotNamespaces = f.Namespaces, f.NotNamespaces
		}
		if to := r.To; to != nil {
			for _, p := range to.Ports {
				if p < 1 || p > 65535 {
					return nil, fmt.Sprintf("%s.to.ports: %d is not a port", where, p)
				}
				out.Ports = append(out.Ports, uint32(p))
			}
			for _, m := range to.Methods {
				if m == "" || strings.ToUpper(m) != m {
					return nil, fmt.Sprintf("%s.to.methods: %q must be an upper-case HTTP method", where, m)
				}
			}
			for _, p := range to.Paths {
				if !strings.HasPrefix(p, "/") && p != "*" {
					return nil, fmt.Sprintf("%s.to.paths: %q must start with / (a trailing * matches a prefix)", where, p)
				}
			}
			out.Methods, out.Paths = to.Methods, to.Paths
		}
		for j, c := range r.When {
			if c.Header == "" || len(c.Values) == 0 {
				return nil, fmt.Sprintf("%s.when[%d]: header and values are required", where, j)
			}
			out.Headers = append(out.Headers, &warrenv1.HeaderCondition{Name: strings.ToLower(c.Header), Values: c.Values})
		}
		if len(out.Methods) > 0 || len(out.Paths) > 0 || len(out.Headers) > 0 {
			res.L7 = true
		}
		res.Rules = append(res.Rules, out)
	}
	return res, ""
}

// policiesForWorkload lists the policies ztunnel enforces on a pod.
func (t *translator) policiesForWorkload(p *corev1.Pod) []string {
	names := append([]string(nil), t.authz.byNamespace[p.Namespace]...)
	for _, svc := range t.ix.ServicesSelecting(p) {
		names = append(names, t.authz.byService[model.Key(svc.Namespace, svc.Name)]...)
	}
	return uniqueSorted(names)
}

// policiesForService lists the policies a waypoint enforces for a Service.
func (t *translator) policiesForService(svc *corev1.Service, gw *gwv1.Gateway) []string {
	names := append([]string(nil), t.authz.byServiceWaypoint[model.Key(svc.Namespace, svc.Name)]...)
	names = append(names, t.authz.byWaypoint[model.Key(gw.Namespace, gw.Name)]...)
	return uniqueSorted(names)
}

func uniqueSorted(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	sort.Strings(s)
	out := s[:1]
	for _, x := range s[1:] {
		if x != out[len(out)-1] {
			out = append(out, x)
		}
	}
	return out
}

// backendTrafficPolicies attaches XBackendTrafficPolicies to Services; when
// several target one Service the oldest wins and the others are Conflicted.
func (t *translator) backendTrafficPolicies() {
	t.backendPolicies = map[string]*warrenv1.BackendTrafficPolicy{}
	owners := map[string]string{}
	pols := append([]*gwxv1a1.XBackendTrafficPolicy(nil), t.ix.BackendTrafficPolicies...)
	sort.SliceStable(pols, func(i, j int) bool {
		a, b := pols[i], pols[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return model.Key(a.Namespace, a.Name) < model.Key(b.Namespace, b.Name)
	})
	for _, p := range pols {
		key := model.Key(p.Namespace, p.Name)
		res, problem := backendTrafficPolicy(p)
		var ancestors []gwv1.PolicyAncestorStatus
		for _, tr := range p.Spec.TargetRefs {
			ns := gwv1.Namespace(p.Namespace)
			anc := gwv1.PolicyAncestorStatus{
				AncestorRef:    gwv1.ParentReference{Group: groupPtr(string(tr.Group)), Kind: kindPtr(string(tr.Kind)), Name: tr.Name, Namespace: &ns},
				ControllerName: model.MeshController,
			}
			svcKey := model.Key(p.Namespace, string(tr.Name))
			switch {
			case tr.Group != "" || tr.Kind != "Service":
				anc.Conditions = []metav1.Condition{cond(PolicyAccepted, false, ReasonInvalid, fmt.Sprintf("targetRef %s.%s is not supported: target a Service", tr.Kind, tr.Group), p.Generation)}
			case t.ix.Service(p.Namespace, string(tr.Name)) == nil:
				anc.Conditions = []metav1.Condition{cond(PolicyAccepted, false, ReasonTargetNotFound, "Service "+svcKey+" not found", p.Generation)}
			case problem != "":
				anc.Conditions = []metav1.Condition{cond(PolicyAccepted, false, ReasonInvalid, problem, p.Generation)}
			case owners[svcKey] != "":
				anc.Conditions = []metav1.Condition{cond(PolicyAccepted, false, ReasonConflicted, "older policy "+owners[svcKey]+" already targets Service "+svcKey, p.Generation)}
			default:
				owners[svcKey] = key
				t.backendPolicies[svcKey] = res
				anc.Conditions = []metav1.Condition{cond(PolicyAccepted, true, "Accepted", "Policy accepted for Service "+svcKey, p.Generation)}
			}
			ancestors = append(ancestors, anc)
		}
		t.out.Status.BackendTrafficPolicies[key] = ancestors
	}
}

func kindPtr(k string) *gwv1.Kind { x := gwv1.Kind(k); return &x }

func backendTrafficPolicy(p *gwxv1a1.XBackendTrafficPolicy) (*warrenv1.BackendTrafficPolicy, string) {
	res := &warrenv1.BackendTrafficPolicy{Source: model.Key(p.Namespace, p.Name)}
	if rc := p.Spec.RetryConstraint; rc != nil {
		b := &warrenv1.RetryBudget{Percent: 20, IntervalMs: 10000, MinRetryCount: 10, MinRetryIntervalMs: 1000}
		if bd := rc.Budget; bd != nil {
			if bd.Percent != nil {
				if *bd.Percent < 0 || *bd.Percent > 100 {
					return nil, fmt.Sprintf("spec.retryConstraint.budget.percent: %d is not 0-100", *bd.Percent)
				}
				b.Percent = uint32(*bd.Percent)
			}
			if bd.Interval != nil {
				d, err := parseDuration(*bd.Interval)
				if err != nil || d <= 0 {
					return nil, fmt.Sprintf("spec.retryConstraint.budget.interval: %q is not a positive duration", *bd.Interval)
				}
				b.IntervalMs = uint64(d.Milliseconds())
			}
		}
		if mr := rc.MinRetryRate; mr != nil {
			if mr.Count != nil {
				if *mr.Count < 0 {
					return nil, fmt.Sprintf("spec.retryConstraint.minRetryRate.count: %d is negative", *mr.Count)
				}
				b.MinRetryCount = uint32(*mr.Count)
			}
			if mr.Interval != nil {
				d, err := parseDuration(*mr.Interval)
				if err != nil || d <= 0 {
					return nil, fmt.Sprintf("spec.retryConstraint.minRetryRate.interval: %q is not a positive duration", *mr.Interval)
				}
				b.MinRetryIntervalMs = uint64(d.Milliseconds())
			}
		}
		res.RetryBudget = b
	}
	if sp := p.Spec.SessionPersistence; sp != nil {
		s, problem := sessionPersistence(sp, "spec")
		if problem != "" {
			return nil, problem
		}
		res.SessionPersistence = s
	}
	return res, ""
}
