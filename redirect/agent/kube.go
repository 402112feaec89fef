package agent

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Watch feeds c from Kubernetes until ctx ends: every Namespace, and the
// Pods bound to c's node. It marks c synced once both caches are.
func Watch(ctx context.Context, client kubernetes.Interface, c *Controller, resync time.Duration) error {
	nsFactory := informers.NewSharedInformerFactory(client, resync)
	podFactory := informers.NewSharedInformerFactoryWithOptions(client, resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", c.opts.NodeName).String()
		}))
	nsInf := nsFactory.Core().V1().Namespaces().Informer()
	podInf := podFactory.Core().V1().Pods().Informer()
	if _, err := nsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { nsEvent(c, o, false) },
		UpdateFunc: func(_, o any) { nsEvent(c, o, false) },
		DeleteFunc: func(o any) { nsEvent(c, o, true) },
	}); err != nil {
		return fmt.Errorf("agent: namespace informer: %w", err)
	}
	if _, err := podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { podEvent(c, o, false) },
		UpdateFunc: func(_, o any) { podEvent(c, o, false) },
		DeleteFunc: func(o any) { podEvent(c, o, true) },
	}); err != nil {
		return fmt.Errorf("agent: pod informer: %w", err)
	}
	nsFactory.Start(ctx.Done())
	podFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), nsInf.HasSynced, podInf.HasSynced) {
		return fmt.Errorf("agent: informer caches did not sync: %w", ctx.Err())
	}
	c.SetSynced()
	<-ctx.Done()
	nsFactory.Shutdown()
	podFactory.Shutdown()
	return nil
}

func unwrap(o any) any {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return o
}

func nsEvent(c *Controller, o any, deleted bool) {
	ns, ok := unwrap(o).(*corev1.Namespace)
	if !ok {
		return
	}
	if deleted {
		c.DeleteNamespace(ns.Name)
		return
	}
	c.UpsertNamespace(ns)
}

func podEvent(c *Controller, o any, deleted bool) {
	p, ok := unwrap(o).(*corev1.Pod)
	if !ok {
		return
	}
	if deleted {
		c.DeletePod(string(p.UID))
		return
	}
	c.UpsertPod(p)
}

// GetPodFunc returns a ControllerOptions.GetPod backed by the API server.
func GetPodFunc(client kubernetes.Interface) func(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	return func(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
		return client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	}
}
