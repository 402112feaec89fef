package translate_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/file"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// TestHugeRouteStaysBounded translates a route at the API's size limits
// (16 rules × 64 matches, 16 headers each, a 1 KiB regex) next to an
// ordinary one: it must finish quickly, produce all 1,024 entries, and
// leave the neighbour untouched.
func TestHugeRouteStaysBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: warren-waypoint}
spec: {controllerName: warren.io/waypoint-controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: big, labels: {warren.io/use-waypoint: waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: big}
spec: {gatewayClassName: warren-waypoint, listeners: [{name: mesh, port: 15008, protocol: HBONE}]}
---
apiVersion: v1
kind: Service
metadata: {name: waypoint, namespace: big}
spec: {clusterIP: 10.96.0.10, ports: [{port: 15008}]}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: big}
spec: {clusterIP: 10.96.0.11, ports: [{name: http, port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: neighbour, namespace: big, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: svc}]
  rules: [{matches: [{path: {type: Exact, value: /n}}], backendRefs: [{name: svc, port: 80}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: huge, namespace: big, creationTimestamp: "2026-01-02T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: svc}]
  rules:
`)
	regex := "/(" + strings.Repeat("a|b|", 200) + "c)+"
	for r := 0; r < 16; r++ {
		b.WriteString("  - matches:\n")
		for m := 0; m < 64; m++ {
			fmt.Fprintf(&b, "    - path: {type: RegularExpression, value: %q}\n      headers:\n", regex)
			for h := 0; h < 16; h++ {
				fmt.Fprintf(&b, "      - {name: x-h%d, value: v%d}\n", h, r*64+m)
			}
		}
		b.WriteString("    backendRefs: [{name: svc, port: 80}]\n")
	}
	snap, err := file.Parse("huge.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out := translate.Translate(model.NewIndex(snap))
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("huge route took %s", el)
	}
	tab := out.L7Services["big/svc.big.svc.cluster.local"].Ports[0].Producer
	if got := len(tab.Routes); got != 16*64+1 {
		t.Fatalf("%d entries, want %d", got, 16*64+1)
	}
	if tab.Routes[0].Source.Name != "neighbour" {
		t.Fatalf("the Exact neighbour must stay first, got %s", tab.Routes[0].Source.Name)
	}
}
