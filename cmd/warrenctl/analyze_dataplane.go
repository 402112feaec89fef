package main

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/xds"
)

func podRunningReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podTerminated(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// ztunnelPods returns the ztunnel pods by node (running and ready ones
// only) and whether any ztunnel pod exists at all.
func (a *analyzer) ztunnelPods() (map[string]*corev1.Pod, bool) {
	byNode := map[string]*corev1.Pod{}
	found := false
	sel := a.ztunnels
	if sel == nil {
		sel = labels.SelectorFromSet(labels.Set{"app": "ztunnel"})
	}
	for _, p := range a.m.ix.Pods {
		if p.Namespace != a.m.ix.Config.SystemNamespace || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		found = true
		if podRunningReady(p) && p.Spec.NodeName != "" {
			byNode[p.Spec.NodeName] = p
		}
	}
	return byNode, found
}

// ztunnelCoverage reports mesh pods on nodes without a running ztunnel
// (WA012). Offline it runs only when the directory holds ztunnel pods.
func (a *analyzer) ztunnelCoverage() {
	byNode, found := a.ztunnelPods()
	if !a.m.live && !found {
		return
	}
	type nodeNS struct{ node, ns string }
	missing := map[nodeNS][]string{}
	var order []nodeNS
	for _, p := range a.m.ix.Pods {
		if p.Spec.NodeName == "" || podTerminated(p) || byNode[p.Spec.NodeName] != nil {
			continue
		}
		if ok, _ := a.m.ix.Enrolled(p); !ok {
			continue
		}
		k := nodeNS{p.Spec.NodeName, p.Namespace}
		if missing[k] == nil {
			order = append(order, k)
		}
		missing[k] = append(missing[k], p.Name)
	}
	sys := a.m.ix.Config.SystemNamespace
	for _, k := range order {
		a.report(codeNoZtunnel, "Node", k.ns, k.node,
			fmt.Sprintf("%d pod(s) of namespace %s in the mesh run on node %s, which has no running ztunnel (%s): their connections are not served by the mesh",
				len(missing[k]), k.ns, k.node, firstN(missing[k], 3)),
			fmt.Sprintf("check the ztunnel DaemonSet (nodeSelector, tolerations, crashes): kubectl -n %s get pods -l %s -o wide --field-selector spec.nodeName=%s", sys, a.selectorString(), k.node))
	}
}

func (a *analyzer) selectorString() string {
	if a.ztunnels == nil {
		return defaultZtunnelSelector
	}
	return a.ztunnels.String()
}

// proxySync reports disconnected ztunnels (WA013) and rejected
// configuration (WA014) from istiod-lite's syncz.
func (a *analyzer) proxySync() {
	if a.syncz == nil {
		return
	}
	connected := map[string]bool{}
	for _, p := range a.syncz {
		if n, err := xds.ParseNodeID(p.Proxy); err == nil && n.Kind == xds.KindZtunnel {
			connected[n.Node] = true
		}
		for _, t := range sortedKeys(p.Types) {
			ts := p.Types[t]
			if ts.Status != xds.StatusNACKed || ts.LastNACK == nil {
				continue
			}
			ns := ""
			if n, err := xds.ParseNodeID(p.Proxy); err == nil && n.Kind == xds.KindWaypoint {
				ns = n.Namespace
			}
			a.report(codeProxyNACK, "Proxy", ns, p.Proxy,
				fmt.Sprintf("rejected its %s configuration (nonce %s, %s ago): %s; it runs on its last good version", shortTypeName(t), ts.LastNACK.Nonce, duration.HumanDuration(a.now.Sub(ts.LastNACK.Time)), oneLine(ts.LastNACK.Error)),
				"warrenctl proxy-status "+p.Proxy+" names the resources; fix the object they come from (or the proxy/control-plane version skew)")
		}
	}
	byNode, _ := a.ztunnelPods()
	for _, node := range sortedKeys(byNode) {
		if connected[node] {
			continue
		}
		p := byNode[node]
		a.report(codeZtunnelDisconnected, "Node", "", node,
			fmt.Sprintf("ztunnel %s/%s on node %s is running but has no xDS stream to istiod-lite: it serves stale configuration, or none", p.Namespace, p.Name, node),
			fmt.Sprintf("kubectl -n %s logs %s (look for xds errors: token, TLS, address)", p.Namespace, p.Name))
	}
}

// strictMTLS finds strict workloads with plaintext clients (WA019) and
// strict mode where nothing enforces it (WA020).
func (a *analyzer) strictMTLS() {
	ix := a.m.ix
	strictNS := map[string][]string{}
	outsideByNS := map[string][]string{}
	notInMeshStrict := map[string][]string{}
	for _, p := range ix.Pods {
		if podTerminated(p) || p.Spec.HostNetwork || isGatewayPod(p) || p.Namespace == ix.Config.SystemNamespace {
			continue
		}
		enrolled, _ := ix.Enrolled(p)
		strict := ix.MTLSStrict(p)
		switch {
		case enrolled && strict:
			strictNS[p.Namespace] = append(strictNS[p.Namespace], p.Name)
		case !enrolled:
			outsideByNS[p.Namespace] = append(outsideByNS[p.Namespace], p.Name)
			if strict {
				if _, own := p.Labels[model.LabelMTLSMode]; own {
					a.report(codeStrictNotInMesh, "Pod", p.Namespace, p.Name,
						fmt.Sprintf("label %s=%s has no effect: the pod is not in the mesh, so nothing refuses plaintext to it", model.LabelMTLSMode, model.MTLSStrict),
						fmt.Sprintf("enrol the pod (label it or its namespace %s=%s), or drop the label", model.LabelDataplaneMode, model.DataplaneAmbient))
				} else {
					notInMeshStrict[p.Namespace] = append(notInMeshStrict[p.Namespace], p.Name)
				}
			}
		}
	}
	for _, ns := range sortedKeys(notInMeshStrict) {
		if ix.NamespaceEnrolled(ns) {
			continue // pods that opted out of a mesh namespace: WA019 covers them
		}
		a.report(codeStrictNotInMesh, "Namespace", ns, ns,
			fmt.Sprintf("namespace label %s=%s has no effect on %d pod(s) outside the mesh (%s)", model.LabelMTLSMode, model.MTLSStrict, len(notInMeshStrict[ns]), firstN(notInMeshStrict[ns], 3)),
			fmt.Sprintf("enrol them (label namespace %s %s=%s), or drop the label", ns, model.LabelDataplaneMode, model.DataplaneAmbient))
	}
	for _, ns := range sortedKeys(strictNS) {
		if len(outsideByNS[ns]) == 0 {
			continue
		}
		a.report(codeStrictPlaintext, "Namespace", ns, ns,
			fmt.Sprintf("%d workload(s) in strict mTLS mode (%s) share the namespace with %d pod(s) outside the mesh (%s): plaintext from those is refused",
				len(strictNS[ns]), firstN(strictNS[ns], 3), len(outsideByNS[ns]), firstN(outsideByNS[ns], 3)),
			fmt.Sprintf("enrol the clients (remove their %s=%s label), or set %s=%s where plaintext must be accepted", model.LabelDataplaneMode, model.DataplaneNone, model.LabelMTLSMode, model.MTLSPermissive))
	}
	// Consumer routes: clients of another namespace, some outside the mesh.
	for _, svc := range ix.Services {
		strict := 0
		for _, p := range ix.SelectedPods(svc) {
			if ok, _ := ix.Enrolled(p); ok && ix.MTLSStrict(p) {
				strict++
			}
		}
		if strict == 0 {
			continue
		}
		for _, r := range routesForService(a.m, svc) {
			if r.Namespace == svc.Namespace || len(outsideByNS[r.Namespace]) == 0 {
				continue
			}
			a.report(codeStrictPlaintext, r.Kind, r.Namespace, r.Name,
				fmt.Sprintf("consumer route for clients in namespace %s binds Service %s/%s, whose workloads are in strict mTLS mode; %d pod(s) of %s are outside the mesh (%s): their plaintext is refused",
					r.Namespace, svc.Namespace, svc.Name, len(outsideByNS[r.Namespace]), r.Namespace, firstN(outsideByNS[r.Namespace], 3)),
				fmt.Sprintf("enrol namespace %s (label %s=%s), or make Service %s/%s's workloads permissive", r.Namespace, model.LabelDataplaneMode, model.DataplaneAmbient, svc.Namespace, svc.Name))
		}
	}
}

// isGatewayPod: waypoint and gateway pods speak HBONE themselves.
func isGatewayPod(p *corev1.Pod) bool {
	_, ok := p.Labels[waypointDeploymentLabel]
	return ok
}

// rootExpiry checks the trust bundle's roots (WA021, WA022).
func (a *analyzer) rootExpiry() {
	for _, r := range a.roots {
		id := fmt.Sprintf("root %s (serial %s)", dash(r.Subject), dash(r.Serial))
		left := r.NotAfter.Sub(a.now)
		switch {
		case left <= 0:
			a.report(codeRootExpired, "TrustBundle", "", id,
				fmt.Sprintf("expired at %s: certificates chaining to it no longer verify", r.NotAfter.UTC().Format(time.RFC3339)),
				"rotate to a new root now (docs/certs.md, root rotation) and restart proxies that still hold the old bundle")
		case left < a.rootWarn:
			a.report(codeRootExpiring, "TrustBundle", "", id,
				fmt.Sprintf("expires at %s, in %s", r.NotAfter.UTC().Format(time.RFC3339), duration.HumanDuration(left)),
				"rotate before then: add the new root (PrepareRoot), wait for every proxy's ACK, switch (ActivatePending), retire the old one after MaxTTL (docs/certs.md)")
		}
	}
}
