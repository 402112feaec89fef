package translate_test

import (
	"bytes"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// clone copies the lists of a snapshot (objects are shared; tests replace
// rather than mutate them).
func clone(s *model.Snapshot) *model.Snapshot {
	c := *s
	c.Pods = append([]*corev1.Pod(nil), s.Pods...)
	c.HTTPRoutes = append([]*gwv1.HTTPRoute(nil), s.HTTPRoutes...)
	c.Services = append([]*corev1.Service(nil), s.Services...)
	return &c
}

func render(t *testing.T, o *translate.Output) []byte {
	t.Helper()
	b, err := o.YAML()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestIncrementalMatchesFull applies pod and route changes one by one and
// checks each incremental result against a full translation.
func TestIncrementalMatchesFull(t *testing.T) {
	snap := synthetic(4, 3, 2)
	var inc translate.Incremental
	if _, scope := inc.Translate(snap, nil); scope != translate.ScopeFull {
		t.Fatalf("first translation scope %s", scope)
	}
	steps := []struct {
		name   string
		mutate func(s *model.Snapshot) []translate.Change
		scope  translate.Scope
	}{
		{"relabel a pod to another service", func(s *model.Snapshot) []translate.Change {
			p := s.Pods[0].DeepCopy()
			p.Labels = map[string]string{"app": "svc-002", model.LabelUseWaypoint: "missing"}
			s.Pods[0] = p
			return []translate.Change{{Kind: "Pod", Namespace: p.Namespace, Name: p.Name}}
		}, translate.ScopePods},
		{"delete a pod", func(s *model.Snapshot) []translate.Change {
			p := s.Pods[1]
			s.Pods = append(s.Pods[:1], s.Pods[2:]...)
			return []translate.Change{{Kind: "Pod", Namespace: p.Namespace, Name: p.Name}}
		}, translate.ScopePods},
		{"add a pod", func(s *model.Snapshot) []translate.Change {
			p := s.Pods[2].DeepCopy()
			p.Name = "new-pod"
			p.Status.PodIP, p.Status.PodIPs = "10.250.0.1", []corev1.PodIP{{IP: "10.250.0.1"}}
			s.Pods = append(s.Pods, p)
			return []translate.Change{{Kind: "Pod", Namespace: p.Namespace, Name: p.Name}}
		}, translate.ScopePods},
		{"change a route's path", func(s *model.Snapshot) []translate.Change {
			r := s.HTTPRoutes[0].DeepCopy()
			v := "/changed"
			r.Spec.Rules[0].Matches[0].Path.Value = &v
			r.Generation = 2
			s.HTTPRoutes[0] = r
			return []translate.Change{{Kind: "HTTPRoute", Namespace: r.Namespace, Name: r.Name}}
		}, translate.ScopeRoutes},
		{"delete a route", func(s *model.Snapshot) []translate.Change {
			r := s.HTTPRoutes[1]
			s.HTTPRoutes = append(s.HTTPRoutes[:1], s.HTTPRoutes[2:]...)
			return []translate.Change{{Kind: "HTTPRoute", Namespace: r.Namespace, Name: r.Name}}
		}, translate.ScopeRoutes},
		{"add a consumer route", func(s *model.Snapshot) []translate.Change {
			r := s.HTTPRoutes[2].DeepCopy()
			r.Name, r.Namespace = "consumer", "ns-003"
			ns := gwv1.Namespace(s.HTTPRoutes[2].Namespace)
			r.Spec.ParentRefs[0].Namespace = &ns
			r.CreationTimestamp = metav1.NewTime(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
			s.HTTPRoutes = append(s.HTTPRoutes, r)
			return []translate.Change{{Kind: "HTTPRoute", Namespace: r.Namespace, Name: r.Name}}
		}, translate.ScopeRoutes},
		{"change a service", func(s *model.Snapshot) []translate.Change {
			svc := s.Services[1].DeepCopy()
			svc.Labels = map[string]string{model.LabelUseWaypoint: "none"}
			s.Services[1] = svc
			return []translate.Change{{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name}}
		}, translate.ScopeFull},
		{"pod and route together", func(s *model.Snapshot) []translate.Change {
			p := s.Pods[3].DeepCopy()
			p.Status.Conditions = nil
			s.Pods[3] = p
			r := s.HTTPRoutes[3].DeepCopy()
			r.Generation = 5
			s.HTTPRoutes[3] = r
			return []translate.Change{{Kind: "Pod", Namespace: p.Namespace, Name: p.Name}, {Kind: "HTTPRoute", Namespace: r.Namespace, Name: r.Name}}
		}, translate.ScopeFull},
		{"a pod change after route changes", func(s *model.Snapshot) []translate.Change {
			p := s.Pods[4].DeepCopy()
			p.Labels[model.LabelDataplaneMode] = model.DataplaneNone
			s.Pods[4] = p
			return []translate.Change{{Kind: "Pod", Namespace: p.Namespace, Name: p.Name}}
		}, translate.ScopePods},
	}
	for _, st := range steps {
		snap = clone(snap)
		changes := st.mutate(snap)
		got, scope := inc.Translate(snap, changes)
		if scope != st.scope {
			t.Errorf("%s: scope %s, want %s", st.name, scope, st.scope)
		}
		want := translate.Translate(model.NewIndex(clone(snap)))
		if g, w := render(t, got), render(t, want); !bytes.Equal(g, w) {
			t.Fatalf("%s: incremental output differs from a full translation", st.name)
		}
	}
}
