package kube

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	secv1 "github.com/warren-mesh/warren/istiod-lite/api/security/v1alpha1"
)

// convertAuthorizationPolicy is the AuthorizationPolicy informer's
// transform: unstructured in, typed out. An object that does not convert
// (a CRD schema older or looser than the Go types) is counted, reported and
// kept unstructured, which Snapshot skips; the informer never stops for it.
// Typed input passes through, so the transform is idempotent.
func (s *Source) convertAuthorizationPolicy(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	u.SetManagedFields(nil)
	ap := &secv1.AuthorizationPolicy{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, ap); err != nil {
		s.metrics.conversionErrors.WithLabelValues(secv1.AuthorizationPolicyResource + "." + secv1.GroupVersion.Group).Inc()
		s.log.Warn("kube source: AuthorizationPolicy does not match the v1alpha1 types; skipped",
			"namespace", u.GetNamespace(), "name", u.GetName(), "resourceVersion", u.GetResourceVersion(), "error", err)
		return u, nil
	}
	return ap, nil
}
