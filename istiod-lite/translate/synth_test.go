package translate_test

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/warren-mesh/warren/istiod-lite/model"
)

// synthetic builds a mesh of nsCount namespaces, each with svcPerNS
// Services (each selecting podsPerSvc pods and carrying one HTTPRoute with
// path and header matches and a 90/10 split), one waypoint per namespace.
func synthetic(nsCount, svcPerNS, podsPerSvc int) *model.Snapshot {
	s := &model.Snapshot{}
	s.GatewayClasses = []*gwv1.GatewayClass{{ObjectMeta: metav1.ObjectMeta{Name: model.WaypointClass}, Spec: gwv1.GatewayClassSpec{ControllerName: model.WaypointController}}}
	s.Nodes = []*corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, {ObjectMeta: metav1.ObjectMeta{Name: "node-b"}}}
	created := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	ip := 0
	nextIP := func(prefix string) string {
		ip++
		return fmt.Sprintf("%s.%d.%d", prefix, ip/250, ip%250+1)
	}
	for n := 0; n < nsCount; n++ {
		ns := fmt.Sprintf("ns-%03d", n)
		s.Namespaces = append(s.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
			model.LabelDataplaneMode: model.DataplaneAmbient, model.LabelUseWaypoint: "waypoint"}}})
		s.Gateways = append(s.Gateways, &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "waypoint", Namespace: ns},
			Spec: gwv1.GatewaySpec{GatewayClassName: model.WaypointClass, Listeners: []gwv1.Listener{{Name: "mesh", Port: 15008, Protocol: "HBONE"}}}})
		s.Services = append(s.Services, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "waypoint", Namespace: ns},
			Spec: corev1.ServiceSpec{ClusterIP: nextIP("10.96"), Ports: []corev1.ServicePort{{Name: "mesh", Port: 15008}}}})
		for i := 0; i < svcPerNS; i++ {
			name := fmt.Sprintf("svc-%03d", i)
			app := "http"
			s.Services = append(s.Services, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
				Spec: corev1.ServiceSpec{ClusterIP: nextIP("10.97"), Selector: map[string]string{"app": name},
					Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), AppProtocol: &app}}}})
			for p := 0; p < podsPerSvc; p++ {
				pip := nextIP("10.244")
				s.Pods = append(s.Pods, &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", name, p), Namespace: ns, Labels: map[string]string{"app": name}},
					Spec:       corev1.PodSpec{NodeName: []string{"node-a", "node-b"}[p%2], ServiceAccountName: name},
					Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: pip, PodIPs: []corev1.PodIP{{IP: pip}},
						Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
				})
			}
			port := gwv1.PortNumber(80)
			w90, w10 := int32(90), int32(10)
			pfx := gwv1.PathMatchPathPrefix
			exact := gwv1.PathMatchExact
			other := fmt.Sprintf("svc-%03d", (i+1)%svcPerNS)
			s.HTTPRoutes = append(s.HTTPRoutes, &gwv1.HTTPRoute{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, CreationTimestamp: created, Generation: 1},
				Spec: gwv1.HTTPRouteSpec{
					CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Group: ptr(gwv1.Group("")), Kind: ptr(gwv1.Kind("Service")), Name: gwv1.ObjectName(name)}}},
					Rules: []gwv1.HTTPRouteRule{
						{Matches: []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: &exact, Value: ptr("/healthz")}}},
							BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(name), Port: &port}}}}},
						{Matches: []gwv1.HTTPRouteMatch{{Path: &gwv1.HTTPPathMatch{Type: &pfx, Value: ptr("/api")}, Headers: []gwv1.HTTPHeaderMatch{{Name: "x-canary", Value: "1"}}}},
							BackendRefs: []gwv1.HTTPBackendRef{
								{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(name), Port: &port}, Weight: &w90}},
								{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: gwv1.ObjectName(other), Port: &port}, Weight: &w10}},
							}},
					},
				},
			})
		}
	}
	return s
}

func ptr[T any](v T) *T { return &v }
