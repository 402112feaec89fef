package main

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/warren-mesh/warren/istiod-lite/model"
)

// grpcAppProtocol checks the Service ports gRPC flows through (WA011):
// the parents and the backends of every GRPCRoute.
func (a *analyzer) grpcAppProtocol() {
	ix := a.m.ix
	seen := map[string]bool{}
	check := func(svc *corev1.Service, port int32, section, via string) {
		for _, sp := range svc.Spec.Ports {
			if (port != 0 && sp.Port != port) || (section != "" && sp.Name != section) {
				continue
			}
			k := fmt.Sprintf("%s/%s/%d", svc.Namespace, svc.Name, sp.Port)
			if seen[k] {
				continue
			}
			seen[k] = true
			ap := appProtocolOf(sp)
			switch strings.ToLower(ap) {
			case "grpc", "grpc-web", "http2", "h2c", "kubernetes.io/h2c":
				continue
			case "":
				a.report(codeGRPCAppProtocol, "Service", svc.Namespace, svc.Name,
					fmt.Sprintf("port %d carries gRPC (%s) but declares no appProtocol: proxies that do not see the route detect the protocol by sniffing, and metrics cannot label it gRPC", sp.Port, via),
					fmt.Sprintf("set appProtocol: grpc (or kubernetes.io/h2c) on port %d, or name the port grpc-…", sp.Port))
			default:
				a.report(codeGRPCAppProtocol, "Service", svc.Namespace, svc.Name,
					fmt.Sprintf("port %d carries gRPC (%s) but declares appProtocol %q: proxies speak %s to it, and gRPC needs HTTP/2", sp.Port, via, ap, ap),
					fmt.Sprintf("set appProtocol: grpc (or kubernetes.io/h2c) on port %d", sp.Port))
			}
		}
	}
	for _, gr := range ix.GRPCRoutes {
		via := "GRPCRoute " + model.Key(gr.Namespace, gr.Name)
		for _, ref := range gr.Spec.ParentRefs {
			if ref.Group == nil || *ref.Group != "" || ref.Kind == nil || *ref.Kind != "Service" {
				continue
			}
			ns := gr.Namespace
			if ref.Namespace != nil && *ref.Namespace != "" {
				ns = string(*ref.Namespace)
			}
			if svc := ix.Service(ns, string(ref.Name)); svc != nil {
				port, section := int32(0), ""
				if ref.Port != nil {
					port = int32(*ref.Port)
				}
				if ref.SectionName != nil {
					section = string(*ref.SectionName)
				}
				check(svc, port, section, via+" binds it")
			}
		}
		for _, rule := range gr.Spec.Rules {
			for _, br := range rule.BackendRefs {
				if !isServiceBackend(br.BackendObjectReference) || br.Port == nil {
					continue
				}
				ns := gr.Namespace
				if br.Namespace != nil && *br.Namespace != "" {
					ns = string(*br.Namespace)
				}
				if svc := ix.Service(ns, string(br.Name)); svc != nil {
					check(svc, int32(*br.Port), "", via+" sends to it")
				}
			}
		}
	}
}

func isServiceBackend(r gwv1.BackendObjectReference) bool {
	return (r.Group == nil || *r.Group == "") && (r.Kind == nil || *r.Kind == "Service")
}

// appProtocolOf is the port's appProtocol, else the one its name implies
// (Istio-style prefixes), as translation derives it.
func appProtocolOf(sp corev1.ServicePort) string {
	if sp.AppProtocol != nil && *sp.AppProtocol != "" {
		return *sp.AppProtocol
	}
	name := strings.ToLower(sp.Name)
	for _, p := range []string{"http2", "grpc-web", "grpc", "h2c", "https", "http", "tcp", "tls"} {
		if name == p || strings.HasPrefix(name, p+"-") {
			return p
		}
	}
	return ""
}
