package status

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"

	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// TestRunnerRetriesAFailedPass: the runner writes what is enqueued, and a
// pass that failed is retried after RetryDelay without a new Enqueue.
func TestRunnerRetriesAFailedPass(t *testing.T) {
	gc := &gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: model.WaypointClass, Generation: 1},
		Spec: gwv1.GatewayClassSpec{ControllerName: model.WaypointController}}
	gw := gwfake.NewSimpleClientset(gc)
	var attempts atomic.Int32
	gw.PrependReactor("update", "gatewayclasses", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "status" && attempts.Add(1) == 1 {
			return true, nil, errors.New("injected failure")
		}
		return false, nil, nil
	})
	w, err := New(Options{Gateway: gw, Dynamic: dynamicfake.NewSimpleDynamicClient(runtime.NewScheme()), RetryDelay: 50 * time.Millisecond, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Start(ctx) }()
	defer func() { cancel(); <-done }()

	desired := translate.Status{GatewayClasses: map[string][]metav1.Condition{
		model.WaypointClass: {{Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted", Message: "ok", ObservedGeneration: 1}},
	}}
	w.Enqueue(&model.Snapshot{GatewayClasses: []*gwv1.GatewayClass{gc}}, desired)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := gw.GatewayV1().GatewayClasses().Get(ctx, model.WaypointClass, metav1.GetOptions{})
		if err == nil && meta.IsStatusConditionTrue(got.Status.Conditions, "Accepted") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never written (attempts %d)", attempts.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := attempts.Load(); n != 2 {
		t.Errorf("%d status updates, want the failed one and its retry", n)
	}
}
