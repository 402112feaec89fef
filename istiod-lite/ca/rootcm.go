package ca

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/warren-mesh/warren/certs"
)

// Root ConfigMap conventions (Istio's istio-ca-root-cert, renamed).
const (
	RootConfigMapName = "warren-ca-root-cert"
	RootConfigMapKey  = "root-cert.pem"
	// EnrolLabel marks a namespace as part of the mesh.
	EnrolLabel = "warren.io/dataplane-mode"
	// EnrolValue is the EnrolLabel value that enrols a namespace.
	EnrolValue   = "ambient"
	managedLabel = "app.kubernetes.io/managed-by"
	managedValue = "istiod-lite"
)

// RootPublisher keeps a warren-ca-root-cert ConfigMap holding the trust
// bundle in the system namespace and every enrolled namespace, and removes
// the ones it created from namespaces that leave the mesh. It reconciles on
// namespace and ConfigMap events, on bundle changes, and periodically.
type RootPublisher struct {
	Client          kubernetes.Interface
	Bundle          *certs.TrustBundle
	SystemNamespace string
	// Resync is the period of a full reconcile. Default 5m.
	Resync time.Duration
	Logger *slog.Logger

	nsInf, cmInf cache.SharedIndexInformer
	kick         chan struct{}
}

// Name identifies the runner.
func (p *RootPublisher) Name() string { return "ca-root-publisher" }

// Start runs until ctx ends.
func (p *RootPublisher) Start(ctx context.Context) error {
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	if p.Resync <= 0 {
		p.Resync = 5 * time.Minute
	}
	p.kick = make(chan struct{}, 1)
	nsFactory := informers.NewSharedInformerFactory(p.Client, 0)
	cmFactory := informers.NewSharedInformerFactoryWithOptions(p.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", RootConfigMapName).String()
	}))
	p.nsInf = nsFactory.Core().V1().Namespaces().Informer()
	p.cmInf = cmFactory.Core().V1().ConfigMaps().Informer()
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { p.trigger() },
		UpdateFunc: func(any, any) { p.trigger() },
		DeleteFunc: func(any) { p.trigger() },
	}
	for _, inf := range []cache.SharedIndexInformer{p.nsInf, p.cmInf} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return fmt.Errorf("ca: root publisher: %w", err)
		}
	}
	nsFactory.Start(ctx.Done())
	cmFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), p.nsInf.HasSynced, p.cmInf.HasSynced) {
		return ctx.Err()
	}
	ticker := time.NewTicker(p.Resync)
	defer ticker.Stop()
	p.trigger()
	for {
		changed := p.Bundle.Changed()
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
		case <-changed:
		case <-ticker.C:
		}
		if err := p.reconcile(ctx); err != nil && ctx.Err() == nil {
			p.Logger.Warn("ca: publishing root ConfigMaps", "error", err)
			// Retry soon; conflicts and transient API errors heal here.
			time.AfterFunc(time.Second, p.trigger)
		}
	}
}

func (p *RootPublisher) trigger() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// desired returns the namespaces that must hold the ConfigMap.
func (p *RootPublisher) desired() map[string]bool {
	want := map[string]bool{p.SystemNamespace: true}
	for _, o := range p.nsInf.GetStore().List() {
		ns := o.(*corev1.Namespace)
		if ns.Labels[EnrolLabel] == EnrolValue && ns.DeletionTimestamp == nil {
			want[ns.Name] = true
		}
	}
	return want
}

func (p *RootPublisher) reconcile(ctx context.Context) error {
	pemData := string(p.Bundle.PEM())
	want := p.desired()
	var firstErr error
	note := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	names := make([]string, 0, len(want))
	for ns := range want {
		names = append(names, ns)
	}
	sort.Strings(names)
	for _, ns := range names {
		if _, exists, _ := p.nsInf.GetStore().GetByKey(ns); !exists {
			continue // the system namespace may not exist yet
		}
		obj, exists, _ := p.cmInf.GetStore().GetByKey(ns + "/" + RootConfigMapName)
		if !exists {
			cm := &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: RootConfigMapName, Namespace: ns, Labels: map[string]string{managedLabel: managedValue}},
				Data:       map[string]string{RootConfigMapKey: pemData},
			}
			_, err := p.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				err = nil // the informer catches up and the next pass compares
			}
			note(err)
			continue
		}
		cm := obj.(*corev1.ConfigMap)
		if cm.Data[RootConfigMapKey] == pemData && cm.Labels[managedLabel] == managedValue {
			continue
		}
		cm = cm.DeepCopy()
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		if cm.Labels == nil {
			cm.Labels = map[string]string{}
		}
		cm.Data[RootConfigMapKey] = pemData
		cm.Labels[managedLabel] = managedValue
		_, err := p.Client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
		note(err)
	}
	for _, o := range p.cmInf.GetStore().List() {
		cm := o.(*corev1.ConfigMap)
		if want[cm.Namespace] || cm.Labels[managedLabel] != managedValue {
			continue
		}
		err := p.Client.CoreV1().ConfigMaps(cm.Namespace).Delete(ctx, cm.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cm.UID}})
		if apierrors.IsNotFound(err) {
			err = nil
		}
		note(err)
	}
	return firstErr
}
