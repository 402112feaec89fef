package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/warren-mesh/warren/istiod-lite/source/file"
	"github.com/warren-mesh/warren/istiod-lite/xds"
)

// analyzeBase is a healthy mesh each case adds to: a waypoint class, two
// nodes with a ztunnel each, an enrolled namespace with a waypoint and a
// Service with a pod.
const analyzeBase = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: warren-waypoint}
spec: {controllerName: warren.io/waypoint-controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: warren-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: app, labels: {warren.io/dataplane-mode: ambient, warren.io/use-waypoint: wp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: app}
spec: {gatewayClassName: warren-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
apiVersion: v1
kind: Service
metadata: {name: wp, namespace: app}
spec: {clusterIP: 10.96.0.5, ports: [{name: mesh, port: 15008}], selector: {gateway.networking.k8s.io/gateway-name: wp}}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: app}
spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80, targetPort: 8080}], selector: {app: svc}}
---
apiVersion: v1
kind: Pod
metadata: {name: svc-0, namespace: app, labels: {app: svc}}
spec: {nodeName: node-a, serviceAccountName: svc, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.1.10, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: ztunnel-a, namespace: warren-system, labels: {app: ztunnel}}
spec: {nodeName: node-a, hostNetwork: true, containers: [{name: z, image: z}]}
status: {phase: Running, podIP: 192.168.0.1, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: ztunnel-b, namespace: warren-system, labels: {app: ztunnel}}
spec: {nodeName: node-b, hostNetwork: true, containers: [{name: z, image: z}]}
status: {phase: Running, podIP: 192.168.0.2, conditions: [{type: Ready, status: "True"}]}
`

func syncedZtunnels() []xds.ProxyStatus {
	return []xds.ProxyStatus{{Proxy: "ztunnel~node-a", Kind: "ztunnel"}, {Proxy: "ztunnel~node-b", Kind: "ztunnel"}}
}

type analyzeCase struct {
	code  string
	name  string
	yaml  string // added to analyzeBase
	live  bool
	syncz []xds.ProxyStatus
	roots []rootInfo
	// object is "Kind ns/name" of the finding.
	object string
	// in is a substring of the message.
	in string
}

var analyzeCases = []analyzeCase{
	{code: codeWaypointMissing, name: "namespace label names a missing waypoint", object: "Namespace other/other", in: "waypoint Gateway other/nope, which does not exist", yaml: `
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {warren.io/use-waypoint: nope}}`},
	{code: codeWaypointMissing, name: "use-waypoint-namespace is honoured", object: "Service app/x", in: "waypoint Gateway elsewhere/wp", yaml: `
apiVersion: v1
kind: Service
metadata: {name: x, namespace: app, labels: {warren.io/use-waypoint: wp, warren.io/use-waypoint-namespace: elsewhere}}
spec: {clusterIP: 10.96.0.20, ports: [{port: 80}]}`},
	{code: codeWaypointUnusable, name: "pod label names a service-only waypoint", object: "Pod app/p", in: "does not serve workload traffic", yaml: `
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: app, labels: {warren.io/use-waypoint: wp}}
spec: {nodeName: node-a, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.1.11}`},
	{code: codeWaypointNotReady, name: "waypoint Deployment unavailable", live: true, syncz: syncedZtunnels(), object: "Gateway app/wp", in: "waypoint is not ready", yaml: `
apiVersion: apps/v1
kind: Deployment
metadata: {name: wp, namespace: app, generation: 1, labels: {gateway.networking.k8s.io/gateway-name: wp}}
spec: {selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}}
status: {observedGeneration: 1, conditions: [{type: Available, status: "False"}]}`},
	{code: codeRouteNoWaypoint, name: "route on a Service without waypoint", object: "HTTPRoute plain/r", in: "which no waypoint serves", yaml: `
apiVersion: v1
kind: Namespace
metadata: {name: plain, labels: {warren.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Service
metadata: {name: s, namespace: plain}
spec: {clusterIP: 10.96.0.30, ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: plain}
spec: {parentRefs: [{group: "", kind: Service, name: s}], rules: [{backendRefs: [{name: s, port: 80}]}]}`},
	{code: codeRouteNotAccepted, name: "parent port does not exist", object: "HTTPRoute app/r", in: "has no port 81", yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec: {parentRefs: [{group: "", kind: Service, name: svc, port: 81}], rules: [{backendRefs: [{name: svc, port: 80}]}]}`},
	{code: codeRoutePartial, name: "one rule has a bad duration", object: "HTTPRoute app/r", in: "timeouts.request", yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{group: "", kind: Service, name: svc}]
  rules:
  - {timeouts: {request: 1d}, backendRefs: [{name: svc, port: 80}]}
  - {matches: [{path: {value: /ok}}], backendRefs: [{name: svc, port: 80}]}`},
	{code: codeRouteKindConflict, name: "HTTPRoute and GRPCRoute share a port", object: "GRPCRoute app/g", in: "cannot share a port", yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: h, namespace: app, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {parentRefs: [{group: "", kind: Service, name: svc}], rules: [{backendRefs: [{name: svc, port: 80}]}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: app, creationTimestamp: "2026-01-02T00:00:00Z"}
spec: {parentRefs: [{group: "", kind: Service, name: svc}], rules: [{backendRefs: [{name: svc, port: 80}]}]}`},
	{code: codeRouteShadowed, name: "identical matches in two routes", object: "HTTPRoute app/newer", in: "the older (then alphabetically first) route wins", yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: older, namespace: app, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {parentRefs: [{group: "", kind: Service, name: svc}], rules: [{matches: [{path: {value: /a}, headers: [{name: x, value: "1"}]}], backendRefs: [{name: svc, port: 80}]}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: newer, namespace: app, creationTimestamp: "2026-01-02T00:00:00Z"}
spec: {parentRefs: [{group: "", kind: Service, name: svc}], rules: [{matches: [{path: {value: /a}, headers: [{name: x, value: "1"}]}], backendRefs: [{name: svc, port: 80}]}]}`},
	{code: codeRouteShadowed, name: "a later rule of the same route repeats a match", object: "HTTPRoute app/r", in: "rule 1 match 0 {PathPrefix /api, GET}", yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{group: "", kind: Service, name: svc}]
  rules:
  - {matches: [{path: {type: PathPrefix, value: /api}, method: GET}], backendRefs: [{name: svc, port: 80}]}
  - {matches: [{path: {type: PathPrefix, value: /api}, method: GET}, {path: {type: PathPrefix, value: /api/v1}}], backendRefs: [{name: svc, port: 80}]}`},
	{code: codeBackendUnresolved, name: "backend kind not supported", object: "HTTPRoute app/r", in: "InvalidKind", yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec: {parentRefs: [{group: "", kind: Service, name: svc}], rules: [{backendRefs: [{group: example.com, kind: Bucket, name: b, port: 80}]}]}`},
	{code: codeBackendNotPermitted, name: "gateway route to another namespace", object: "HTTPRoute app/r", in: "needs a ReferenceGrant", yaml: `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: warren}
spec: {controllerName: warren.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec: {gatewayClassName: warren, listeners: [{name: http, port: 80, protocol: HTTP}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Service
metadata: {name: s, namespace: other}
spec: {clusterIP: 10.96.0.40, ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec: {parentRefs: [{name: gw}], rules: [{backendRefs: [{name: s, namespace: other, port: 80}]}]}`},
	{code: codeGRPCAppProtocol, name: "gRPC backend without appProtocol", object: "Service app/back", in: "declares no appProtocol", yaml: `
apiVersion: v1
kind: Service
metadata: {name: back, namespace: app}
spec: {clusterIP: 10.96.0.50, ports: [{name: api, port: 9000}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: app}
spec: {parentRefs: [{group: "", kind: Service, name: svc}], rules: [{backendRefs: [{name: back, port: 9000}]}]}`},
	{code: codeNoZtunnel, name: "mesh pod on a node without ztunnel", object: "Node app/node-c", in: "no running ztunnel", yaml: `
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: app}
spec: {nodeName: node-c, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.3.10}`},
	{code: codeZtunnelDisconnected, name: "running ztunnel without a stream", live: true, syncz: []xds.ProxyStatus{{Proxy: "ztunnel~node-a", Kind: "ztunnel"}},
		object: "Node node-b", in: "no xDS stream to istiod-lite"},
	{code: codeProxyNACK, name: "waypoint rejected its config", live: true, object: "Proxy app/waypoint~app/wp~wp-1", in: "rejected its L7Service configuration (nonce 7, 2m ago): bad regex",
		syncz: append(syncedZtunnels(), xds.ProxyStatus{Proxy: "waypoint~app/wp~wp-1", Kind: "waypoint", Types: map[string]xds.TypeStatus{
			xds.TypeL7Service: {Status: xds.StatusNACKed, LastNACK: &xds.NACK{Nonce: "7", Error: "bad regex", Time: fixedNow.Add(-2 * time.Minute)}}}})},
	{code: codePolicyTargetNotFound, name: "policy targets a missing waypoint", object: "AuthorizationPolicy app/p", in: "is not a waypoint", yaml: `
apiVersion: security.warren.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: p, namespace: app}
spec: {targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: nope}]}`},
	{code: codePolicyInvalid, name: "identity is not a SPIFFE ID", object: "AuthorizationPolicy app/p", in: "is not a spiffe:// ID", yaml: `
apiVersion: security.warren.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: p, namespace: app}
spec: {rules: [{from: {identities: [bob]}}]}`},
	{code: codePolicyNotEnforced, name: "policy on a waypoint nobody uses", object: "AuthorizationPolicy idle/p", in: "no Service or pod uses waypoint idle/wp2", yaml: `
apiVersion: v1
kind: Namespace
metadata: {name: idle}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp2, namespace: idle}
spec: {gatewayClassName: warren-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
apiVersion: security.warren.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: p, namespace: idle}
spec: {targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: wp2}]}`},
	{code: codePolicyL7NoWaypoint, name: "namespace-wide L7 policy", object: "AuthorizationPolicy app/p", in: "only ztunnel enforces it", yaml: `
apiVersion: security.warren.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: p, namespace: app}
spec: {rules: [{to: {methods: [GET]}}]}`},
	{code: codeStrictPlaintext, name: "consumer route from a namespace outside the mesh", object: "HTTPRoute outside/r", in: "whose workloads are in strict mTLS mode", yaml: `
apiVersion: v1
kind: Namespace
metadata: {name: outside}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: outside}
spec: {nodeName: node-a, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.1.60}
---
apiVersion: v1
kind: Pod
metadata: {name: strict-0, namespace: app, labels: {app: svc, warren.io/mtls-mode: strict}}
spec: {nodeName: node-a, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.1.61}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: outside}
spec: {parentRefs: [{group: "", kind: Service, name: svc, namespace: app}], rules: [{backendRefs: [{name: svc, namespace: app, port: 80}]}]}`},
	{code: codeStrictNotInMesh, name: "strict namespace outside the mesh", object: "Namespace plain/plain", in: "has no effect on 1 pod(s)", yaml: `
apiVersion: v1
kind: Namespace
metadata: {name: plain, labels: {warren.io/mtls-mode: strict}}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: plain}
spec: {nodeName: node-a, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.1.70}`},
	{code: codeRootExpired, name: "expired root", object: "TrustBundle root old (serial 1)", in: "expired at 2026-08-01T00:00:00Z",
		roots: []rootInfo{{Subject: "old", Serial: "1", NotAfter: time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)}, {Subject: "new", Serial: "2", NotAfter: fixedNow.AddDate(5, 0, 0)}}},
	{code: codeRootExpiring, name: "root expiring in a week", object: "TrustBundle root soon (serial 3)", in: "in 7d",
		roots: []rootInfo{{Subject: "soon", Serial: "3", NotAfter: fixedNow.Add(7 * 24 * time.Hour)}}},
	{code: codePolicyL7AtZtunnel, name: "namespace and waypoint targeted ALLOW with a method condition", object: "AuthorizationPolicy app/p", in: "its ALLOW rules with method/path/header conditions never match there", yaml: `
apiVersion: security.warren.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: p, namespace: app}
spec: {targetRefs: [{group: "", kind: Namespace, name: app}, {group: gateway.networking.k8s.io, kind: Gateway, name: wp}], rules: [{to: {methods: [GET]}}]}`},
	{code: codePolicyL7NoWaypoint, name: "service without waypoint, L7 rule", object: "AuthorizationPolicy plain/p", in: "only ztunnel enforces it", yaml: `
apiVersion: v1
kind: Namespace
metadata: {name: plain, labels: {warren.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: plain}
spec: {clusterIP: 10.96.0.40, ports: [{name: http, port: 80}], selector: {app: web}}
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, namespace: plain, labels: {app: web}}
spec: {nodeName: node-a, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.1.90}
---
apiVersion: security.warren.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: p, namespace: plain}
spec: {targetRefs: [{group: "", kind: Service, name: web}], rules: [{to: {paths: ["/x"]}}]}`},
}

func analyzeCaseMesh(t *testing.T, c analyzeCase) *mesh {
	t.Helper()
	snap, err := file.Parse("case.yaml", []byte(analyzeBase+"\n---\n"+c.yaml))
	if err != nil {
		t.Fatal(err)
	}
	return newMesh(snap, c.live, "case", nil)
}

func objectOf(f finding) string {
	if f.Namespace == "" {
		return f.Kind + " " + f.Name
	}
	return f.Kind + " " + f.Namespace + "/" + f.Name
}

// TestAnalyzeCodes: each case finds its code on its object, with a fix,
// and the healthy base finds nothing.
func TestAnalyzeCodes(t *testing.T) {
	sel := labels.SelectorFromSet(labels.Set{"app": "ztunnel"})
	base := analyzeMesh(analyzeInput{m: analyzeCaseMesh(t, analyzeCase{}), now: fixedNow, rootWarn: 30 * 24 * time.Hour, ztunnels: sel, syncz: syncedZtunnels()})
	if len(base) != 0 {
		t.Fatalf("the base mesh has findings: %+v", base)
	}
	for _, c := range analyzeCases {
		t.Run(c.code+" "+c.name, func(t *testing.T) {
			fs := analyzeMesh(analyzeInput{m: analyzeCaseMesh(t, c), now: fixedNow, rootWarn: 30 * 24 * time.Hour, ztunnels: sel, syncz: c.syncz, roots: c.roots})
			var found *finding
			for i := range fs {
				if fs[i].Code == c.code && objectOf(fs[i]) == c.object {
					found = &fs[i]
				}
			}
			if found == nil {
				t.Fatalf("no %s on %s; findings: %+v", c.code, c.object, fs)
			}
			if !strings.Contains(found.Message, c.in) {
				t.Errorf("message %q lacks %q", found.Message, c.in)
			}
			if found.Fix == "" || found.Severity != severityOf(c.code) {
				t.Errorf("fix %q severity %q", found.Fix, found.Severity)
			}
			for _, f := range fs {
				if f.Fix == "" {
					t.Errorf("finding without a fix: %+v", f)
				}
			}
		})
	}
}

// TestAnalyzeCodeRegistry: codes are unique, in order, with a known
// severity, a name and a summary, and every code has a test case above.
func TestAnalyzeCodeRegistry(t *testing.T) {
	tested := map[string]bool{}
	for _, c := range analyzeCases {
		tested[c.code] = true
	}
	for i, c := range analyzerCodes {
		if want := "WA" + strings.Repeat("0", 3-len(itoa(i+1))) + itoa(i+1); c.Code != want {
			t.Errorf("code %d is %s, want %s: codes are numbered in order and never reused", i, c.Code, want)
		}
		if c.Severity != sevError && c.Severity != sevWarning || c.Name == "" || c.Summary == "" {
			t.Errorf("incomplete code %+v", c)
		}
		if !tested[c.Code] {
			t.Errorf("code %s (%s) has no case in analyzeCases", c.Code, c.Name)
		}
	}
}

// TestAnalyzeOfflineSkipsLiveChecks: without live state the checks that
// need it stay silent instead of guessing.
func TestAnalyzeOfflineSkipsLiveChecks(t *testing.T) {
	c := analyzeCase{yaml: `
apiVersion: apps/v1
kind: Deployment
metadata: {name: other, namespace: app, labels: {x: y}}
spec: {selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}}`}
	m := analyzeCaseMesh(t, c)
	m.snap.WaypointDeployments = nil
	fs := analyzeMesh(analyzeInput{m: m, now: fixedNow, rootWarn: time.Hour})
	for _, f := range fs {
		if slices.Contains([]string{codeWaypointNotReady, codeZtunnelDisconnected, codeProxyNACK, codeRootExpired, codeRootExpiring}, f.Code) {
			t.Errorf("offline finding %+v", f)
		}
	}
}

func TestFilterFindings(t *testing.T) {
	fs := []finding{{Code: "WA001", Namespace: "a"}, {Code: "WA021"}, {Code: "WA002", Namespace: "b"}}
	got := filterFindings(fs, "a")
	if len(got) != 2 || got[0].Namespace != "a" || got[1].Namespace != "" {
		t.Errorf("filter = %+v", got)
	}
	if len(filterFindings(fs, "")) != 3 {
		t.Error("no filter dropped findings")
	}
}
