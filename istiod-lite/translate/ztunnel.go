package translate

import (
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/model"
)

// identity is spiffe://<td>/ns/<ns>/sa/<sa>.
func (t *translator) identity(ns, sa string) string {
	if sa == "" {
		sa = "default"
	}
	return "spiffe://" + t.ix.Config.TrustDomain + "/ns/" + ns + "/sa/" + sa
}

// serviceKey is the resource name of a Service: "<ns>/<hostname>".
func (t *translator) serviceKey(svc *corev1.Service) string {
	return svc.Namespace + "/" + t.ix.Hostname(svc)
}

// workloads translates every pod with an IP into a Workload.
func (t *translator) workloads() {
	for _, p := range t.ix.Pods {
		if w := t.workload(p); w != nil {
			t.out.Workloads[w.Uid] = w
		}
	}
}

func (t *translator) workload(p *corev1.Pod) *warrenv1.Workload {
	ips := model.PodIPs(p)
	// Host-network pods share the node's address: they are not workloads
	// ztunnel can address or capture.
	if len(ips) == 0 || p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return nil
	}
	w := &warrenv1.Workload{
		Uid:            model.Key(p.Namespace, p.Name),
		Name:           p.Name,
		Namespace:      p.Namespace,
		Node:           p.Spec.NodeName,
		ServiceAccount: p.Spec.ServiceAccountName,
		Identity:       t.identity(p.Namespace, p.Spec.ServiceAccountName),
		Ready:          podReady(p),
		WorkloadName:   workloadName(p),
		Services:       map[string]*warrenv1.PortList{},
	}
	if w.ServiceAccount == "" {
		w.ServiceAccount = "default"
	}
	for _, ip := range ips {
		w.Addresses = append(w.Addresses, ip.String())
	}
	if ok, _ := t.ix.Enrolled(p); ok {
		w.Tunnel = warrenv1.TunnelProtocol_TUNNEL_HBONE
	}
	if t.ix.MTLSStrict(p) {
		w.MtlsMode = warrenv1.MTLSMode_MTLS_STRICT
	}
	if n := t.ix.Node(p.Spec.NodeName); n != nil {
		w.Zone = n.Labels[corev1.LabelTopologyZone]
	}
	if b := t.ix.WaypointForWorkload(p); b.Gateway != nil {
		w.Waypoint = t.waypointAddress(b.Gateway)
	} else if b.Problem != "" {
		t.diag("Pod", p.Namespace, p.Name, b.Source+": "+b.Problem)
	}
	for _, svc := range t.ix.ServicesSelecting(p) {
		var ports []*warrenv1.PortMapping
		for _, sp := range svc.Spec.Ports {
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
				continue
			}
			if target := resolveTargetPort(sp, p); target > 0 {
				ports = append(ports, &warrenv1.PortMapping{ServicePort: uint32(sp.Port), TargetPort: uint32(target)})
			}
		}
		if len(ports) > 0 {
			w.Services[t.serviceKey(svc)] = &warrenv1.PortList{Ports: ports}
		}
	}
	w.AuthorizationPolicies = t.policiesForWorkload(p)
	return w
}

// resolveTargetPort maps a Service port to the pod's port: a number, or a
// named container port; 0 when the pod does not expose the name.
func resolveTargetPort(sp corev1.ServicePort, p *corev1.Pod) int32 {
	tp := sp.TargetPort
	switch {
	case tp.Type == intstr.Int && tp.IntVal > 0:
		return tp.IntVal
	case tp.Type == intstr.String && tp.StrVal != "":
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == tp.StrVal {
					return cp.ContainerPort
				}
			}
		}
		return 0
	}
	return sp.Port
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// workloadName is the pod's owning workload: a ReplicaSet's Deployment
// (the pod-template-hash suffix stripped), another owner, an app label,
// or the pod name.
func workloadName(p *corev1.Pod) string {
	for _, o := range p.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		if o.Kind == "ReplicaSet" {
			if h := p.Labels["pod-template-hash"]; h != "" {
				return strings.TrimSuffix(o.Name, "-"+h)
			}
		}
		return o.Name
	}
	for _, l := range []string{"app.kubernetes.io/name", "app"} {
		if v := p.Labels[l]; v != "" {
			return v
		}
	}
	return p.Name
}

// services translates every Service except ExternalName ones.
func (t *translator) services() {
	for _, svc := range t.ix.Services {
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		s := &warrenv1.Service{
			Name:          svc.Name,
			Namespace:     svc.Namespace,
			Hostname:      t.ix.Hostname(svc),
			LoadBalancing: loadBalancing(svc),
		}
		for _, ip := range model.ServiceIPs(svc) {
			s.Addresses = append(s.Addresses, ip.String())
		}
		for _, sp := range svc.Spec.Ports {
			port := &warrenv1.ServicePort{
				Port:        uint32(sp.Port),
				Name:        sp.Name,
				AppProtocol: appProtocol(sp),
				Protocol:    string(sp.Protocol),
			}
			if port.Protocol == "" {
				port.Protocol = string(corev1.ProtocolTCP)
			}
			switch {
			case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
				port.TargetPortName = sp.TargetPort.StrVal
			case sp.TargetPort.IntVal > 0:
				port.TargetPort = uint32(sp.TargetPort.IntVal)
			default:
				port.TargetPort = uint32(sp.Port)
			}
			s.Ports = append(s.Ports, port)
		}
		if b := t.ix.WaypointForService(svc); b.Gateway != nil {
			s.Waypoint = t.waypointAddress(b.Gateway)
		} else if b.Problem != "" {
			t.diag("Service", svc.Namespace, svc.Name, b.Source+": "+b.Problem)
		}
		s.TrafficPolicy = t.backendPolicies[model.Key(svc.Namespace, svc.Name)]
		t.out.Services[t.serviceKey(svc)] = s
	}
}

// appProtocol is the port's appProtocol, else one derived from an
// Istio-style port name prefix (http-, http2-, grpc-, h2c-, tcp-).
func appProtocol(sp corev1.ServicePort) string {
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

// loadBalancing maps spec.trafficDistribution onto routing preferences:
// PreferSameNode keeps traffic on the node, then the zone; PreferClose (and
// the default) prefers the node, then the zone, failing over beyond.
func loadBalancing(svc *corev1.Service) *warrenv1.LoadBalancing {
	lb := &warrenv1.LoadBalancing{RoutingPreference: []warrenv1.LoadBalancing_Scope{warrenv1.LoadBalancing_NODE, warrenv1.LoadBalancing_ZONE}}
	if td := svc.Spec.TrafficDistribution; td != nil && *td == corev1.ServiceTrafficDistributionPreferClose {
		lb.RoutingPreference = []warrenv1.LoadBalancing_Scope{warrenv1.LoadBalancing_ZONE}
	}
	return lb
}

// waypointAddress describes how to reach a waypoint Gateway: its Service
// (created by the deployer, same name) or its first IP address. Nil when
// the waypoint has no address yet.
func (t *translator) waypointAddress(gw *gwv1.Gateway) *warrenv1.GatewayAddress {
	addr := t.waypointIP(gw)
	if addr == "" {
		return nil
	}
	return &warrenv1.GatewayAddress{
		Gateway:   model.Key(gw.Namespace, gw.Name),
		Hostname:  gw.Name + "." + gw.Namespace + ".svc." + t.ix.Config.ClusterDomain,
		Address:   addr,
		HbonePort: model.HBONEPort,
		Identity:  t.identity(gw.Namespace, gw.Name),
	}
}

func (t *translator) waypointIP(gw *gwv1.Gateway) string {
	if svc := t.ix.Service(gw.Namespace, gw.Name); svc != nil {
		if ips := model.ServiceIPs(svc); len(ips) > 0 {
			return ips[0].String()
		}
	}
	for _, a := range gw.Spec.Addresses {
		if a.Type == nil || *a.Type == gwv1.IPAddressType {
			return a.Value
		}
	}
	return ""
}

// trustBundle publishes the CA roots.
func (t *translator) trustBundle() {
	if len(t.ix.TrustBundlePEM) == 0 {
		return
	}
	roots := append([]string(nil), t.ix.TrustBundlePEM...)
	sort.Strings(roots)
	t.out.TrustBundle = &warrenv1.TrustBundle{TrustDomain: t.ix.Config.TrustDomain, RootsPem: roots}
}
