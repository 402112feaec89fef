package cluster

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// Cluster DNS: CoreDNS (built from source by hack/image-bins.sh) deployed as
// kube-system/coredns behind the Service kube-system/kube-dns on the 10th
// address of the Service range (10.96.0.10 by default), which every kubelet
// names as clusterDNS. Pods with the default dnsPolicy (ClusterFirst) then
// resolve <svc>.<ns>, <svc>.<ns>.svc.cluster.local and, from their own
// namespace, <svc>. The objects are the kubeadm ones (RBAC, Corefile,
// Deployment, Service); names outside cluster.local are forwarded to the
// nameservers in the host's /etc/resolv.conf (the CoreDNS pod has dnsPolicy
// Default), which answers only if the machine routes pod traffic out.

const (
	// ClusterDomain is the kubelet's clusterDomain and CoreDNS's zone.
	ClusterDomain = "cluster.local"
	dnsNamespace  = "kube-system"
	dnsName       = "coredns"
	dnsService    = "kube-dns"
)

// dnsIP is the cluster DNS Service address: the 10th address of the Service
// range, as kubeadm does.
func dnsIP(serviceCIDR netip.Prefix) netip.Addr {
	a := serviceCIDR.Addr()
	for range 10 {
		a = a.Next()
	}
	return a
}

// DNSIP returns the cluster DNS Service address, or an invalid address when
// the cluster runs without DNS.
func (c *Cluster) DNSIP() netip.Addr {
	if c.l.SkipDNS {
		return netip.Addr{}
	}
	return c.l.DNSIP
}

// corefile is kubeadm's default Corefile.
func corefile() string {
	return `.:53 {
    errors
    health {
        lameduck 5s
    }
    ready
    kubernetes ` + ClusterDomain + ` in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
        max_concurrent 1000
    }
    cache 30 {
        disable success ` + ClusterDomain + `
        disable denial ` + ClusterDomain + `
    }
    loop
    reload
    loadbalance
}
`
}

// dnsObjects returns the cluster DNS objects in creation order.
func dnsObjects(ip netip.Addr) (*corev1.ServiceAccount, *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding, *corev1.ConfigMap, *appsv1.Deployment, *corev1.Service) {
	labels := map[string]string{"k8s-app": dnsService}
	meta := func(name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: dnsNamespace, Labels: labels}
	}
	sa := &corev1.ServiceAccount{ObjectMeta: meta(dnsName)}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "system:" + dnsName, Labels: labels},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"endpoints", "services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "system:" + dnsName, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:" + dnsName},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: dnsName, Namespace: dnsNamespace}},
	}
	cm := &corev1.ConfigMap{ObjectMeta: meta(dnsName), Data: map[string]string{"Corefile": corefile()}}
	one := int32(1)
	ro := true
	dep := &appsv1.Deployment{
		ObjectMeta: meta(dnsName),
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: dnsName,
					PriorityClassName:  "system-cluster-critical",
					DNSPolicy:          corev1.DNSDefault,
					Tolerations:        []corev1.Toleration{{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists}},
					Containers: []corev1.Container{{
						Name:            dnsName,
						Image:           CoreDNSImage,
						ImagePullPolicy: corev1.PullNever,
						Args:            []string{"-conf", "/etc/coredns/Corefile"},
						Ports: []corev1.ContainerPort{
							{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
							{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
							{Name: "metrics", ContainerPort: 9153, Protocol: corev1.ProtocolTCP},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "config-volume", MountPath: "/etc/coredns", ReadOnly: true}},
						LivenessProbe: &corev1.Probe{
							ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(8080)}},
							PeriodSeconds:    10,
							FailureThreshold: 5,
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8181)}},
							PeriodSeconds: 1,
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: new(bool),
							ReadOnlyRootFilesystem:   &ro,
							Capabilities: &corev1.Capabilities{
								Add:  []corev1.Capability{"NET_BIND_SERVICE"},
								Drop: []corev1.Capability{"ALL"},
							},
						},
					}},
					Volumes: []corev1.Volume{{
						Name: "config-volume",
						VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: dnsName},
						}},
					}},
				},
			},
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: dnsService, Namespace: dnsNamespace,
			Labels: map[string]string{"k8s-app": dnsService, "kubernetes.io/name": "CoreDNS"},
		},
		Spec: corev1.ServiceSpec{
			Selector:  labels,
			ClusterIP: ip.String(),
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
				{Name: "metrics", Port: 9153, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9153)},
			},
		},
	}
	return sa, role, binding, cm, dep, svc
}

// deployDNS creates the cluster DNS objects (existing ones are kept) and
// waits until CoreDNS is ready and answers for the kubernetes Service.
func deployDNS(ctx context.Context, l layout, cs kubernetes.Interface, timeout time.Duration) error {
	sa, role, binding, cm, dep, svc := dnsObjects(l.DNSIP)
	opts := metav1.CreateOptions{}
	created := func(what string, err error) error {
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("dns: create %s: %w", what, err)
		}
		return nil
	}
	_, err := cs.CoreV1().ServiceAccounts(dnsNamespace).Create(ctx, sa, opts)
	if err := created("serviceaccount", err); err != nil {
		return err
	}
	_, err = cs.RbacV1().ClusterRoles().Create(ctx, role, opts)
	if err := created("clusterrole", err); err != nil {
		return err
	}
	_, err = cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, opts)
	if err := created("clusterrolebinding", err); err != nil {
		return err
	}
	_, err = cs.CoreV1().ConfigMaps(dnsNamespace).Create(ctx, cm, opts)
	if err := created("configmap", err); err != nil {
		return err
	}
	_, err = cs.CoreV1().Services(dnsNamespace).Create(ctx, svc, opts)
	if err := created("service", err); err != nil {
		return err
	}
	_, err = cs.AppsV1().Deployments(dnsNamespace).Create(ctx, dep, opts)
	if err := created("deployment", err); err != nil {
		return err
	}
	pods, err := WaitPodsReady(ctx, cs, dnsNamespace, "k8s-app="+dnsService, 1, timeout)
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	// The host reaches pod IPs directly: ask the CoreDNS pod itself.
	want := l.ServiceIP.String()
	name := "kubernetes.default.svc." + ClusterDomain
	_, err = Eventually(ctx, 30*time.Second, func(ctx context.Context) (string, error) {
		addrs, err := LookupVia(ctx, net.JoinHostPort(pods[0].Status.PodIP, "53"), name)
		if err != nil {
			return "", err
		}
		if len(addrs) != 1 || addrs[0] != want {
			return "", fmt.Errorf("%s resolved to %v, want %s", name, addrs, want)
		}
		return "", nil
	})
	if err != nil {
		return fmt.Errorf("dns: coredns pod %s: %w", pods[0].Name, err)
	}
	return nil
}

// LookupVia resolves name (fully qualified, no search list) with the DNS
// server at server ("ip:port") over UDP, as Go's resolver does.
func LookupVia(ctx context.Context, server, name string) ([]string, error) {
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		},
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, strings.TrimSuffix(name, ".")+".")
	if err != nil {
		return nil, fmt.Errorf("cluster: lookup %s via %s: %w", name, server, err)
	}
	return addrs, nil
}
