package waypoint

import (
	"testing"
)

func TestAuthorization(t *testing.T) {
	a := startBackend(t, "echo-1")
	policies := `apiVersion: security.warren.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: get-api, namespace: shop, generation: 1}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]
  rules:
  - from: {namespaces: [client]}
    to: {methods: [GET], paths: ["/api/*"]}
    when: [{header: X-Tenant, values: [a, b]}]
  - from: {identities: ["spiffe://cluster.local/ns/ops/sa/admin"]}
---
apiVersion: security.warren.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop, generation: 1}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]
  action: DENY
  rules:
  - to: {paths: ["/api/admin*"]}
`
	h := newHarness(t, mesh([]pod{a.pod("echo")}, policies), harnessOpts{})
	if n := len(h.store.Config().L7Services[echoKey].GetAuthorizationPolicies()); n != 2 {
		t.Fatalf("translated L7Service carries %d policies, want 2", n)
	}
	client := h.listen(echoDest())
	other := h.listen(Destination{Service: echoKey, Port: 80, SourceNamespace: "other", SourceIdentity: "spiffe://cluster.local/ns/other/sa/x"})
	admin := h.listen(Destination{Service: echoKey, Port: 80, SourceNamespace: "ops", SourceIdentity: "spiffe://cluster.local/ns/ops/sa/admin"})
	for _, c := range []struct {
		name, addr, method, path, tenant string
		status                           int
	}{
		{"allowed", client, "GET", "/api/items", "a", 200},
		{"allowed other tenant value", client, "GET", "/api/x", "b", 200},
		{"wrong method", client, "POST", "/api/items", "a", 403},
		{"wrong tenant", client, "GET", "/api/items", "c", 403},
		{"no tenant", client, "GET", "/api/items", "", 403},
		{"path outside the prefix", client, "GET", "/apix", "a", 403},
		{"dot segments cannot escape a deny", client, "GET", "/api/x/../admin/users", "a", 403},
		{"deny wins over allow", client, "GET", "/api/admin/users", "a", 403},
		{"other namespace: default deny", other, "GET", "/api/items", "a", 403},
		{"identity rule", admin, "DELETE", "/anything", "", 200},
		{"deny applies to everyone", admin, "GET", "/api/admin", "", 403},
	} {
		hdr := map[string]string{}
		if c.tenant != "" {
			hdr["X-Tenant"] = c.tenant
		}
		r := h.do(c.addr, c.method, c.path, hdr, "")
		if r.status != c.status {
			t.Errorf("%s: %s %s → %d, want %d", c.name, c.method, c.path, r.status, c.status)
		}
	}
	if got := h.counter(metricDenied, map[string]string{"destination_service": echoKey, "policy": "shop/no-admin", "reason": "deny-policy"}); got != 3 {
		t.Errorf("deny-policy denials counted %v, want 3", got)
	}
	if got := h.counter(metricDenied, map[string]string{"reason": "no-allow-match"}); got != 5 {
		t.Errorf("no-allow-match denials counted %v, want 5", got)
	}
	if got := h.counter(metricRequests, map[string]string{"response_code": "403", "response_flags": "DENY"}); got != 8 {
		t.Errorf("403 requests counted %v, want 8", got)
	}
	if a.hits.Load() != 3 {
		t.Errorf("backend saw %d requests, want 3 (denied requests never leave)", a.hits.Load())
	}
}
