package main

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwxv1a1 "sigs.k8s.io/gateway-api/apisx/v1alpha1"

	secv1 "github.com/warren-mesh/warren/istiod-lite/api/security/v1alpha1"
	"github.com/warren-mesh/warren/istiod-lite/model"
)

// Names istiod-lite uses in the cluster.
const (
	waypointDeploymentLabel = "gateway.networking.k8s.io/gateway-name"
	rootCertConfigMap       = "warren-ca-root-cert"
	rootCertKey             = "root-cert.pem"
)

// liveSnapshot lists, once, every object istiod-lite's translation reads
// (what its informers would hold), cluster-wide. Kinds whose CRD is not
// installed are left empty and named in notes; any other failure is an
// error. The trust bundle comes from the root ConfigMap in the system
// namespace.
func liveSnapshot(ctx context.Context, kc *kubeClients, systemNS string) (*model.Snapshot, []string, error) {
	s := &model.Snapshot{Config: model.MeshConfig{SystemNamespace: systemNS}}
	var notes []string
	all := metav1.ListOptions{}
	core := kc.core.CoreV1()
	step := func(what string, err error) error { return kc.apiError("list "+what, err) }

	nss, err := core.Namespaces().List(ctx, all)
	if err != nil {
		return nil, nil, step("namespaces", err)
	}
	s.Namespaces = ptrs(nss.Items)
	pods, err := core.Pods("").List(ctx, all)
	if err != nil {
		return nil, nil, step("pods", err)
	}
	s.Pods = ptrs(pods.Items)
	svcs, err := core.Services("").List(ctx, all)
	if err != nil {
		return nil, nil, step("services", err)
	}
	s.Services = ptrs(svcs.Items)
	nodes, err := core.Nodes().List(ctx, all)
	if err != nil {
		return nil, nil, step("nodes", err)
	}
	s.Nodes = ptrs(nodes.Items)
	eps, err := kc.core.DiscoveryV1().EndpointSlices("").List(ctx, all)
	if err != nil {
		return nil, nil, step("endpointslices", err)
	}
	s.EndpointSlices = ptrs[discoveryv1.EndpointSlice](eps.Items)
	deps, err := kc.core.AppsV1().Deployments("").List(ctx, metav1.ListOptions{LabelSelector: waypointDeploymentLabel})
	if err != nil {
		return nil, nil, step("deployments", err)
	}
	s.WaypointDeployments = ptrs[appsv1.Deployment](deps.Items)

	// Optional kinds: a missing CRD answers 404.
	optional := func(kind string, err error) error {
		if apierrors.IsNotFound(err) {
			notes = append(notes, kind+" CRD not installed")
			return nil
		}
		return step(strings.ToLower(kind)+"s", err)
	}
	gw := kc.gw.GatewayV1()
	if l, err := gw.GatewayClasses().List(ctx, all); err == nil {
		s.GatewayClasses = ptrs[gwv1.GatewayClass](l.Items)
	} else if err := optional("GatewayClass", err); err != nil {
		return nil, nil, err
	}
	if l, err := gw.Gateways("").List(ctx, all); err == nil {
		s.Gateways = ptrs[gwv1.Gateway](l.Items)
	} else if err := optional("Gateway", err); err != nil {
		return nil, nil, err
	}
	if l, err := gw.HTTPRoutes("").List(ctx, all); err == nil {
		s.HTTPRoutes = ptrs[gwv1.HTTPRoute](l.Items)
	} else if err := optional("HTTPRoute", err); err != nil {
		return nil, nil, err
	}
	if l, err := gw.GRPCRoutes("").List(ctx, all); err == nil {
		s.GRPCRoutes = ptrs[gwv1.GRPCRoute](l.Items)
	} else if err := optional("GRPCRoute", err); err != nil {
		return nil, nil, err
	}
	if l, err := gw.ReferenceGrants("").List(ctx, all); err == nil {
		s.ReferenceGrants = ptrs[gwv1.ReferenceGrant](l.Items)
	} else if err := optional("ReferenceGrant", err); err != nil {
		return nil, nil, err
	}
	if l, err := kc.gw.ExperimentalV1alpha1().XBackendTrafficPolicies("").List(ctx, all); err == nil {
		s.BackendTrafficPolicies = ptrs[gwxv1a1.XBackendTrafficPolicy](l.Items)
	} else if err := optional("XBackendTrafficPolicy", err); err != nil {
		return nil, nil, err
	}
	gvr := schema.GroupVersionResource{Group: secv1.GroupVersion.Group, Version: secv1.GroupVersion.Version, Resource: secv1.AuthorizationPolicyResource}
	if l, err := kc.dyn.Resource(gvr).Namespace("").List(ctx, all); err == nil {
		for i := range l.Items {
			ap := &secv1.AuthorizationPolicy{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(l.Items[i].Object, ap); err != nil {
				notes = append(notes, fmt.Sprintf("AuthorizationPolicy %s/%s skipped: %v", l.Items[i].GetNamespace(), l.Items[i].GetName(), err))
				continue
			}
			s.AuthorizationPolicies = append(s.AuthorizationPolicies, ap)
		}
	} else if err := optional("AuthorizationPolicy", err); err != nil {
		return nil, nil, err
	}

	cm, err := core.ConfigMaps(systemNS).Get(ctx, rootCertConfigMap, metav1.GetOptions{})
	switch {
	case err == nil:
		s.TrustBundlePEM = splitPEM(cm.Data[rootCertKey])
	case apierrors.IsNotFound(err):
		notes = append(notes, fmt.Sprintf("ConfigMap %s/%s not found: trust bundle unknown", systemNS, rootCertConfigMap))
	default:
		return nil, nil, step("configmaps", err)
	}
	return s, notes, nil
}

func ptrs[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

// splitPEM splits a PEM bundle into one string per certificate.
func splitPEM(s string) []string {
	var out []string
	const end = "-----END CERTIFICATE-----"
	for {
		i := strings.Index(s, end)
		if i < 0 {
			return out
		}
		block := strings.TrimSpace(s[:i+len(end)])
		if j := strings.Index(block, "-----BEGIN"); j >= 0 {
			out = append(out, block[j:]+"\n")
		}
		s = s[i+len(end):]
	}
}
