package status

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/warren-mesh/warren/istiod-lite/model"
)

var (
	t0  = metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	now = metav1.NewTime(time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
)

func c(typ, st, reason, msg string, gen int64, at metav1.Time) metav1.Condition {
	return metav1.Condition{Type: typ, Status: metav1.ConditionStatus(st), Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: at}
}

func TestMergeConditions(t *testing.T) {
	zero := metav1.Time{}
	cases := []struct {
		name             string
		current, desired []metav1.Condition
		want             []metav1.Condition
	}{
		{
			name:    "unchanged keeps time and is deep-equal",
			current: []metav1.Condition{c("Accepted", "True", "Accepted", "ok", 1, t0), c("Programmed", "True", "Programmed", "ok", 1, t0)},
			desired: []metav1.Condition{c("Programmed", "True", "Programmed", "ok", 1, zero), c("Accepted", "True", "Accepted", "ok", 1, zero)},
			want:    []metav1.Condition{c("Accepted", "True", "Accepted", "ok", 1, t0), c("Programmed", "True", "Programmed", "ok", 1, t0)},
		},
		{
			name:    "status, reason, message or generation change takes now",
			current: []metav1.Condition{c("A", "True", "R", "m", 1, t0), c("B", "True", "R", "m", 1, t0), c("C", "True", "R", "m", 1, t0), c("D", "True", "R", "m", 1, t0)},
			desired: []metav1.Condition{c("A", "False", "R", "m", 1, zero), c("B", "True", "R2", "m", 1, zero), c("C", "True", "R", "m2", 1, zero), c("D", "True", "R", "m", 2, zero)},
			want:    []metav1.Condition{c("A", "False", "R", "m", 1, now), c("B", "True", "R2", "m", 1, now), c("C", "True", "R", "m2", 1, now), c("D", "True", "R", "m", 2, now)},
		},
		{
			name:    "stale owned types dropped, other domains kept in place, new ones appended",
			current: []metav1.Condition{c("example.com/Foo", "True", "X", "theirs", 1, t0), c("Accepted", "True", "Accepted", "ok", 1, t0), c("warren.io/Old", "True", "R", "m", 1, t0), c("ResolvedRefs", "True", "R", "m", 1, t0)},
			desired: []metav1.Condition{c("Accepted", "True", "Accepted", "ok", 1, zero), c("warren.io/New", "True", "R", "m", 1, zero)},
			want:    []metav1.Condition{c("example.com/Foo", "True", "X", "theirs", 1, t0), c("Accepted", "True", "Accepted", "ok", 1, t0), c("warren.io/New", "True", "R", "m", 1, now)},
		},
		{
			name:    "duplicates in current collapse",
			current: []metav1.Condition{c("Accepted", "True", "Accepted", "ok", 1, t0), c("Accepted", "False", "X", "old", 1, t0)},
			desired: []metav1.Condition{c("Accepted", "True", "Accepted", "ok", 1, zero)},
			want:    []metav1.Condition{c("Accepted", "True", "Accepted", "ok", 1, t0)},
		},
		{
			name:    "first write from the CRD's defaults",
			current: []metav1.Condition{c("Accepted", "Unknown", "Pending", "Waiting for controller", 0, metav1.NewTime(time.Unix(0, 0)))},
			desired: []metav1.Condition{c("Accepted", "True", "Accepted", "ok", 3, zero), c("Programmed", "False", "Pending", "wait", 3, zero)},
			want:    []metav1.Condition{c("Accepted", "True", "Accepted", "ok", 3, now), c("Programmed", "False", "Pending", "wait", 3, now)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := append([]metav1.Condition(nil), tc.current...)
			got := MergeConditions(tc.current, tc.desired, now)
			if !equality.Semantic.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
			if !equality.Semantic.DeepEqual(before, tc.current) {
				t.Fatal("current was modified")
			}
		})
	}
}

func parent(ctrl, kind, name string, conds ...metav1.Condition) gwv1.RouteParentStatus {
	g, k := gwv1.Group(""), gwv1.Kind(kind)
	if kind == "Gateway" {
		g = gwv1.GroupName
	}
	return gwv1.RouteParentStatus{ParentRef: gwv1.ParentReference{Group: &g, Kind: &k, Name: gwv1.ObjectName(name)}, ControllerName: gwv1.GatewayController(ctrl), Conditions: conds}
}

func TestMergeRouteParents(t *testing.T) {
	zero := metav1.Time{}
	other := "example.com/other"
	current := []gwv1.RouteParentStatus{
		parent(other, "Gateway", "theirs", c("Accepted", "True", "Accepted", "theirs", 1, t0)),
		parent(model.MeshController, "Service", "echo", c("Accepted", "True", "Accepted", "ok", 1, t0)),
		parent(model.MeshController, "Service", "removed", c("Accepted", "True", "Accepted", "ok", 1, t0)),
		parent(other, "Service", "echo", c("Accepted", "False", "Nope", "theirs too", 1, t0)),
	}
	orig := make([]gwv1.RouteParentStatus, len(current))
	for i := range current {
		orig[i] = *current[i].DeepCopy()
	}

	t.Run("unchanged is deep-equal", func(t *testing.T) {
		desired := []gwv1.RouteParentStatus{
			parent(model.MeshController, "Service", "echo", c("Accepted", "True", "Accepted", "ok", 1, zero)),
			parent(model.MeshController, "Service", "removed", c("Accepted", "True", "Accepted", "ok", 1, zero)),
		}
		if got := MergeRouteParents(current, desired, now); !equality.Semantic.DeepEqual(got, current) {
			t.Fatalf("unchanged merge differs:\n%+v", got)
		}
	})
	t.Run("others kept, stale removed, changed and new merged", func(t *testing.T) {
		desired := []gwv1.RouteParentStatus{
			parent(model.WaypointController, "Gateway", "new", c("Accepted", "False", "NotAllowedByListeners", "no", 1, zero)),
			parent(model.MeshController, "Service", "echo", c("Accepted", "True", "Accepted", "ok", 2, zero)),
		}
		want := []gwv1.RouteParentStatus{
			parent(other, "Gateway", "theirs", c("Accepted", "True", "Accepted", "theirs", 1, t0)),
			parent(model.MeshController, "Service", "echo", c("Accepted", "True", "Accepted", "ok", 2, now)),
			parent(other, "Service", "echo", c("Accepted", "False", "Nope", "theirs too", 1, t0)),
			parent(model.WaypointController, "Gateway", "new", c("Accepted", "False", "NotAllowedByListeners", "no", 1, now)),
		}
		got := MergeRouteParents(current, desired, now)
		if !equality.Semantic.DeepEqual(got, want) {
			t.Fatalf("got  %+v\nwant %+v", got, want)
		}
		if !equality.Semantic.DeepEqual(current, orig) {
			t.Fatal("current was modified")
		}
	})
	t.Run("nothing desired removes only Warren's", func(t *testing.T) {
		got := MergeRouteParents(current, nil, now)
		if len(got) != 2 || string(got[0].ControllerName) != other || string(got[1].ControllerName) != other {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("parentRef defaults match explicit values", func(t *testing.T) {
		implicit := gwv1.RouteParentStatus{ParentRef: gwv1.ParentReference{Name: "gw"}, ControllerName: model.GatewayController,
			Conditions: []metav1.Condition{c("Accepted", "True", "Accepted", "ok", 1, t0)}}
		explicit := parent(model.GatewayController, "Gateway", "gw", c("Accepted", "True", "Accepted", "ok", 1, zero))
		got := MergeRouteParents([]gwv1.RouteParentStatus{implicit}, []gwv1.RouteParentStatus{explicit}, now)
		if len(got) != 1 || !got[0].Conditions[0].LastTransitionTime.Equal(&t0) {
			t.Fatalf("defaulted and explicit refs did not match: %+v", got)
		}
	})
}

func TestMergePolicyAncestors(t *testing.T) {
	zero := metav1.Time{}
	ns := gwv1.Namespace("shop")
	anc := func(ctrl, name string, cond metav1.Condition) gwv1.PolicyAncestorStatus {
		g, k := gwv1.Group(""), gwv1.Kind("Service")
		return gwv1.PolicyAncestorStatus{AncestorRef: gwv1.ParentReference{Group: &g, Kind: &k, Namespace: &ns, Name: gwv1.ObjectName(name)}, ControllerName: gwv1.GatewayController(ctrl), Conditions: []metav1.Condition{cond}}
	}
	current := []gwv1.PolicyAncestorStatus{
		anc("example.com/other", "echo", c("Accepted", "True", "Accepted", "theirs", 1, t0)),
		anc(model.MeshController, "echo", c("Accepted", "True", "Accepted", "ok", 1, t0)),
		anc(model.MeshController, "gone", c("Accepted", "True", "Accepted", "ok", 1, t0)),
	}
	desired := []gwv1.PolicyAncestorStatus{anc(model.MeshController, "echo", c("Accepted", "True", "Accepted", "ok", 1, zero))}
	got := MergePolicyAncestors(current, desired, now)
	want := current[:2]
	if !equality.Semantic.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestMergeGateway(t *testing.T) {
	zero := metav1.Time{}
	ip := gwv1.IPAddressType
	current := gwv1.GatewayStatus{
		Addresses:  []gwv1.GatewayStatusAddress{{Type: &ip, Value: "10.0.0.1"}},
		Conditions: []metav1.Condition{c("Accepted", "True", "Accepted", "ok", 1, t0), c("Programmed", "False", "Pending", "wait", 1, t0)},
		Listeners: []gwv1.ListenerStatus{{Name: "mesh", SupportedKinds: []gwv1.RouteGroupKind{}, Conditions: []metav1.Condition{
			c("Accepted", "True", "Accepted", "ok", 1, t0)}}},
	}
	desired := gwv1.GatewayStatus{
		Addresses:  []gwv1.GatewayStatusAddress{{Type: &ip, Value: "10.0.0.1"}},
		Conditions: []metav1.Condition{c("Accepted", "True", "Accepted", "ok", 1, zero), c("Programmed", "True", "Programmed", "up", 1, zero)},
		Listeners: []gwv1.ListenerStatus{{Name: "mesh", Conditions: []metav1.Condition{
			c("Accepted", "True", "Accepted", "ok", 1, zero)}}},
	}
	got := MergeGateway(current, desired, now)
	if !got.Conditions[0].LastTransitionTime.Equal(&t0) || !got.Conditions[1].LastTransitionTime.Equal(&now) {
		t.Fatalf("gateway condition times: %+v", got.Conditions)
	}
	if !got.Listeners[0].Conditions[0].LastTransitionTime.Equal(&t0) {
		t.Fatalf("listener condition time not kept: %+v", got.Listeners[0].Conditions)
	}
	desired.Conditions[1] = c("Programmed", "False", "Pending", "wait", 1, zero)
	if again := MergeGateway(current, desired, now); !equality.Semantic.DeepEqual(again, current) {
		t.Fatalf("unchanged gateway status differs:\n%+v\n%+v", again, current)
	}
}
