package agent_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/warren-mesh/warren/redirect/agent"
)

// TestWatch drives the controller from (fake) API server objects: the
// informer wrapper's events enrol and release a running pod live.
func TestWatch(t *testing.T) {
	f := newFakes(t)
	shop := ns("shop", nil)
	p := kpod("shop", "cart", "u-cart", "node-a", nil, nil)
	client := fake.NewSimpleClientset(&shop, &p)
	fd := &finder{found: map[string]string{"u-cart": netnsPath(3)}}
	c := agent.NewController(agent.ControllerOptions{Agent: f.a, NodeName: "node-a", Finder: fd, GetPod: agent.GetPodFunc(client)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go agent.Watch(ctx, client, c, time.Minute)
	go c.Run(ctx)
	// Synced and reconciled: not enrolled yet.
	waitUntil(t, func() bool { return len(f.a.Status()) == 0 && len(f.dp.Ops()) == 0 })
	amb := ns("shop", ambient)
	if _, err := client.CoreV1().Namespaces().Update(ctx, &amb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return f.a.Enrolled("u-cart") })
	p.Labels = map[string]string{agent.LabelDataplaneMode: agent.ModeNone}
	if _, err := client.CoreV1().Pods("shop").Update(ctx, &p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return !f.a.Enrolled("u-cart") })
	p.Labels = nil
	if _, err := client.CoreV1().Pods("shop").Update(ctx, &p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return f.a.Enrolled("u-cart") })
	if err := client.CoreV1().Pods("shop").Delete(ctx, "cart", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return !f.a.Enrolled("u-cart") && len(enrolled(t, f.dp)) == 0 })
}
