package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// fieldManager is the server-side apply field manager of everything the
// runner applies.
const fieldManager = "warren-conformance"

var crdGK = schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}

// ReadManifests reads Kubernetes objects from YAML or JSON files: each path
// is a file or a directory, read recursively in lexical order (*.yaml,
// *.yml, *.json; kustomization files are skipped). Multi-document files and
// v1 Lists are split; empty documents are dropped.
func ReadManifests(paths ...string) ([]*unstructured.Unstructured, error) {
	var files []string
	for _, p := range paths {
		err := filepath.WalkDir(p, func(f string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			base := strings.ToLower(d.Name())
			if d.IsDir() || strings.HasPrefix(base, "kustomization.") {
				return nil
			}
			switch filepath.Ext(base) {
			case ".yaml", ".yml", ".json":
				files = append(files, f)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("conformance: manifests %s: %w", p, err)
		}
	}
	sort.Strings(files)
	var out []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("conformance: manifests: %w", err)
		}
		objs, err := decodeManifests(b)
		if err != nil {
			return nil, fmt.Errorf("conformance: manifests %s: %w", f, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

func decodeManifests(b []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(u.Object) == 0 {
			continue
		}
		if u.IsList() {
			l, err := u.ToList()
			if err != nil {
				return nil, err
			}
			for i := range l.Items {
				out = append(out, &l.Items[i])
			}
			continue
		}
		if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("object without apiVersion, kind or name: %v", truncate(fmt.Sprint(u.Object), 200))
		}
		out = append(out, u)
	}
}

// Applier applies objects with server-side apply, mapping kinds through
// discovery (reset after it installs CRDs, so their kinds resolve).
type Applier struct {
	dyn    dynamic.Interface
	cs     kubernetes.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

// NewApplier returns an Applier talking to cfg's cluster.
func NewApplier(cfg *rest.Config) (*Applier, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("conformance: dynamic client: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("conformance: clientset: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("conformance: discovery: %w", err)
	}
	return &Applier{dyn: dyn, cs: cs, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

// Apply server-side applies objs (forcing ownership of conflicting fields):
// Namespaces and CustomResourceDefinitions first, waiting until the CRDs are
// established, then everything else in the given order.
func (a *Applier) Apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	var first, rest, crds []*unstructured.Unstructured
	for _, o := range objs {
		gk := o.GroupVersionKind().GroupKind()
		switch {
		case gk == crdGK:
			crds = append(crds, o)
			first = append(first, o)
		case gk == schema.GroupKind{Kind: "Namespace"}:
			first = append(first, o)
		default:
			rest = append(rest, o)
		}
	}
	for _, o := range first {
		if err := a.apply(ctx, o); err != nil {
			return err
		}
	}
	if len(crds) > 0 {
		for _, c := range crds {
			if err := a.waitEstablished(ctx, c.GetName(), time.Minute); err != nil {
				return err
			}
		}
		a.mapper.Reset()
	}
	for _, o := range rest {
		if err := a.apply(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

func (a *Applier) apply(ctx context.Context, o *unstructured.Unstructured) error {
	gvk := o.GroupVersionKind()
	what := fmt.Sprintf("%s %s", gvk.Kind, name(o))
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		a.mapper.Reset() // a kind installed by an earlier object
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return fmt.Errorf("conformance: apply %s: %w", what, err)
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := o.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		ri = a.dyn.Resource(m.Resource).Namespace(ns)
	}
	if _, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("conformance: apply %s: %w", what, err)
	}
	return nil
}

func (a *Applier) waitEstablished(ctx context.Context, crd string, timeout time.Duration) error {
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	return poll(ctx, timeout, func(ctx context.Context) (string, error) {
		u, err := a.dyn.Resource(gvr).Get(ctx, crd, metav1.GetOptions{})
		if err != nil {
			return err.Error(), nil
		}
		if condition(u, "Established") == "True" {
			return "", nil
		}
		return "not established", nil
	}, "CRD "+crd)
}

// WaitWorkloads waits until every Deployment, DaemonSet and StatefulSet
// among objs has rolled out with all replicas ready.
func (a *Applier) WaitWorkloads(ctx context.Context, objs []*unstructured.Unstructured, timeout time.Duration) error {
	for _, o := range objs {
		if o.GroupVersionKind().Group != "apps" {
			continue
		}
		ns := o.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		n := o.GetName()
		var check func(ctx context.Context) (string, error)
		switch o.GetKind() {
		case "Deployment":
			check = func(ctx context.Context) (string, error) {
				d, err := a.cs.AppsV1().Deployments(ns).Get(ctx, n, metav1.GetOptions{})
				if err != nil {
					return err.Error(), nil
				}
				want := int32(1)
				if d.Spec.Replicas != nil {
					want = *d.Spec.Replicas
				}
				s := d.Status
				if s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.AvailableReplicas == want && s.Replicas == want {
					return "", nil
				}
				return fmt.Sprintf("%d/%d available, %d updated", s.AvailableReplicas, want, s.UpdatedReplicas), nil
			}
		case "DaemonSet":
			check = func(ctx context.Context) (string, error) {
				d, err := a.cs.AppsV1().DaemonSets(ns).Get(ctx, n, metav1.GetOptions{})
				if err != nil {
					return err.Error(), nil
				}
				s := d.Status
				if s.ObservedGeneration >= d.Generation && s.DesiredNumberScheduled > 0 && s.NumberReady == s.DesiredNumberScheduled && s.UpdatedNumberScheduled == s.DesiredNumberScheduled {
					return "", nil
				}
				return fmt.Sprintf("%d/%d ready, %d updated", s.NumberReady, s.DesiredNumberScheduled, s.UpdatedNumberScheduled), nil
			}
		case "StatefulSet":
			check = func(ctx context.Context) (string, error) {
				d, err := a.cs.AppsV1().StatefulSets(ns).Get(ctx, n, metav1.GetOptions{})
				if err != nil {
					return err.Error(), nil
				}
				want := int32(1)
				if d.Spec.Replicas != nil {
					want = *d.Spec.Replicas
				}
				if d.Status.ObservedGeneration >= d.Generation && d.Status.ReadyReplicas == want && d.Status.UpdatedReplicas == want {
					return "", nil
				}
				return fmt.Sprintf("%d/%d ready", d.Status.ReadyReplicas, want), nil
			}
		default:
			continue
		}
		if err := poll(ctx, timeout, check, o.GetKind()+" "+ns+"/"+n); err != nil {
			return err
		}
	}
	return nil
}

// poll calls f every 500 ms until it reports nothing pending ("") or returns
// an error, or timeout passes; the error then names what and the last
// pending state.
func poll(ctx context.Context, timeout time.Duration, f func(context.Context) (string, error), what string) error {
	deadline := time.Now().Add(timeout)
	for {
		pending, err := f(ctx)
		if err != nil {
			return fmt.Errorf("conformance: %s: %w", what, err)
		}
		if pending == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("conformance: %s: not ready after %s: %s", what, timeout, pending)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("conformance: %s: %w (last: %s)", what, ctx.Err(), pending)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// condition returns the status of the condition typ in u's status, or "".
func condition(u *unstructured.Unstructured, typ string) string {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == typ {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}

func name(o *unstructured.Unstructured) string {
	if o.GetNamespace() != "" {
		return o.GetNamespace() + "/" + o.GetName()
	}
	return o.GetName()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// isNotFound reports whether err is a Kubernetes NotFound error.
func isNotFound(err error) bool { return apierrors.IsNotFound(err) }
