package status

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/warren-mesh/warren/istiod-lite/model"
)

// WarrenControllers are the controller names whose route parents and policy
// ancestors this writer owns; entries of any other controller are kept as
// they are.
var WarrenControllers = []string{model.MeshController, model.WaypointController, model.GatewayController}

func isWarren(controller string) bool {
	for _, c := range WarrenControllers {
		if c == controller {
			return true
		}
	}
	return false
}

// ownedConditionType reports whether Warren answers for conditions of type t
// on objects it manages: the Gateway API's unprefixed types and warren.io/
// ones. Other domains' types ("example.com/Foo") belong to someone else and
// are never removed or reordered (Gateway API status rules).
func ownedConditionType(t string) bool {
	domain, _, prefixed := strings.Cut(t, "/")
	return !prefixed || domain == "warren.io"
}

// sameCondition reports whether c changed nothing that matters from old:
// status, reason, message and observedGeneration.
func sameCondition(c, old metav1.Condition) bool {
	return c.Status == old.Status && c.Reason == old.Reason && c.Message == old.Message && c.ObservedGeneration == old.ObservedGeneration
}

// MergeConditions returns the conditions to write given the current ones
// and the desired ones (whose lastTransitionTime is ignored):
//   - a desired condition replaces the current one of its type in place,
//     keeping its lastTransitionTime when sameCondition, taking now
//     otherwise;
//   - current conditions of types Warren owns but no longer wants are
//     dropped; other domains' types are kept where they are;
//   - desired types not present yet are appended in desired order.
//
// Order within current is preserved, so a merge of unchanged input is
// deep-equal to current. Neither input is modified.
func MergeConditions(current, desired []metav1.Condition, now metav1.Time) []metav1.Condition {
	want := make(map[string]metav1.Condition, len(desired))
	for _, d := range desired {
		if _, dup := want[d.Type]; !dup {
			want[d.Type] = d
		}
	}
	placed := make(map[string]bool, len(desired))
	out := make([]metav1.Condition, 0, len(current)+len(desired))
	for _, c := range current {
		d, ok := want[c.Type]
		switch {
		case ok && placed[c.Type]:
			// A duplicate of a type already placed: drop it.
		case ok:
			placed[c.Type] = true
			out = append(out, stamp(d, &c, now))
		case ownedConditionType(c.Type):
			// Ours and stale.
		default:
			out = append(out, c)
		}
	}
	for _, d := range desired {
		if !placed[d.Type] {
			placed[d.Type] = true
			out = append(out, stamp(d, nil, now))
		}
	}
	return out
}

// stamp gives d its lastTransitionTime: old's when nothing changed.
func stamp(d metav1.Condition, old *metav1.Condition, now metav1.Time) metav1.Condition {
	if old != nil && sameCondition(d, *old) {
		d.LastTransitionTime = old.LastTransitionTime
	} else {
		d.LastTransitionTime = now
	}
	return d
}

// refKey identifies a parent or ancestor reference, defaults applied (group
// gateway.networking.k8s.io, kind Gateway).
func refKey(r gwv1.ParentReference) string {
	group, kind, ns, section, port := gwv1.GroupName, "Gateway", "", "", ""
	if r.Group != nil {
		group = string(*r.Group)
	}
	if r.Kind != nil {
		kind = string(*r.Kind)
	}
	if r.Namespace != nil {
		ns = string(*r.Namespace)
	}
	if r.SectionName != nil {
		section = string(*r.SectionName)
	}
	if r.Port != nil {
		port = fmt.Sprint(*r.Port)
	}
	return strings.Join([]string{group, kind, ns, string(r.Name), section, port}, "\x00")
}

// MergeRouteParents returns a route's status.parents to write: entries of
// other controllers kept in place; Warren's entries replaced in place by
// the desired entry for the same controller and parentRef (conditions
// merged by MergeConditions) or dropped when no longer desired; new desired
// entries appended. Neither input is modified.
func MergeRouteParents(current, desired []gwv1.RouteParentStatus, now metav1.Time) []gwv1.RouteParentStatus {
	return mergeEntries(current, desired, now,
		func(e *gwv1.RouteParentStatus) (string, string, *[]metav1.Condition) {
			return string(e.ControllerName), refKey(e.ParentRef), &e.Conditions
		},
		func(e gwv1.RouteParentStatus) gwv1.RouteParentStatus { return *e.DeepCopy() })
}

// MergePolicyAncestors is MergeRouteParents for a policy's
// status.ancestors, keyed by ancestorRef and controllerName.
func MergePolicyAncestors(current, desired []gwv1.PolicyAncestorStatus, now metav1.Time) []gwv1.PolicyAncestorStatus {
	return mergeEntries(current, desired, now,
		func(e *gwv1.PolicyAncestorStatus) (string, string, *[]metav1.Condition) {
			return string(e.ControllerName), refKey(e.AncestorRef), &e.Conditions
		},
		func(e gwv1.PolicyAncestorStatus) gwv1.PolicyAncestorStatus { return *e.DeepCopy() })
}

// mergeEntries implements MergeRouteParents and MergePolicyAncestors; parts
// returns an entry's controller, reference key and conditions.
func mergeEntries[T any](current, desired []T, now metav1.Time, parts func(*T) (string, string, *[]metav1.Condition), deepCopy func(T) T) []T {
	used := make([]bool, len(desired))
	find := func(ctrl, key string) int {
		for i := range desired {
			if used[i] {
				continue
			}
			if c, k, _ := parts(&desired[i]); c == ctrl && k == key {
				return i
			}
		}
		return -1
	}
	out := make([]T, 0, len(current)+len(desired))
	for _, c := range current {
		ctrl, key, conds := parts(&c)
		if !isWarren(ctrl) {
			out = append(out, deepCopy(c))
			continue
		}
		i := find(ctrl, key)
		if i < 0 {
			continue // Warren's, and stale
		}
		used[i] = true
		d := deepCopy(desired[i])
		_, _, dconds := parts(&d)
		*dconds = MergeConditions(*conds, *dconds, now)
		out = append(out, d)
	}
	for i := range desired {
		if used[i] {
			continue
		}
		d := deepCopy(desired[i])
		_, _, dconds := parts(&d)
		*dconds = MergeConditions(nil, *dconds, now)
		out = append(out, d)
	}
	return out
}

// MergeGateway returns the Gateway status to write: addresses and listeners
// as desired (each listener's conditions merged with the current listener
// of the same name), the Gateway's conditions merged, other fields kept.
func MergeGateway(current, desired gwv1.GatewayStatus, now metav1.Time) gwv1.GatewayStatus {
	next := *current.DeepCopy()
	want := desired.DeepCopy()
	next.Addresses = want.Addresses
	next.Conditions = MergeConditions(current.Conditions, want.Conditions, now)
	next.Listeners = want.Listeners
	for i := range next.Listeners {
		var cur []metav1.Condition
		for _, l := range current.Listeners {
			if l.Name == next.Listeners[i].Name {
				cur = l.Conditions
				break
			}
		}
		next.Listeners[i].Conditions = MergeConditions(cur, next.Listeners[i].Conditions, now)
	}
	return next
}
