package authz

import (
	"net/http"
	"testing"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

func TestEvaluate(t *testing.T) {
	allowAPI := &warrenv1.Authorization{Namespace: "shop", Name: "allow-api", Rules: []*warrenv1.AuthorizationRule{{
		Namespaces: []string{"client"}, Methods: []string{"GET"}, Paths: []string{"/api/*", "/exact"},
		Headers: []*warrenv1.HeaderCondition{{Name: "x-tenant", Values: []string{"a", "pre*", "*suf"}}},
	}}}
	allowAdmin := &warrenv1.Authorization{Namespace: "shop", Name: "allow-admin", Rules: []*warrenv1.AuthorizationRule{{
		Identities: []string{"spiffe://td/ns/ops/*"}, NotIdentities: []string{"spiffe://td/ns/ops/sa/intern"}, Ports: []uint32{80},
	}}}
	deny := &warrenv1.Authorization{Namespace: "shop", Name: "deny", Action: warrenv1.Authorization_DENY, Rules: []*warrenv1.AuthorizationRule{{
		NotNamespaces: []string{"client", "ops"},
	}, {Paths: []string{"/api/secret"}}}}
	client := Source{Identity: "spiffe://td/ns/client/sa/a", Namespace: "client"}
	ops := Source{Identity: "spiffe://td/ns/ops/sa/admin", Namespace: "ops"}
	intern := Source{Identity: "spiffe://td/ns/ops/sa/intern", Namespace: "ops"}
	for _, c := range []struct {
		name     string
		policies []*warrenv1.Authorization
		q        Request
		allow    bool
		reason   string
	}{
		{"no policies", nil, Request{Source: client}, true, "no-policies"},
		{"only deny, not matching", []*warrenv1.Authorization{deny}, Request{Source: client, Path: "/x"}, true, "no-policies"},
		{"allow match", []*warrenv1.Authorization{allowAPI}, Request{Source: client, Method: "GET", Path: "/api/x", Header: http.Header{"X-Tenant": {"a"}}}, true, "allowed"},
		{"header prefix", []*warrenv1.Authorization{allowAPI}, Request{Source: client, Method: "GET", Path: "/exact", Header: http.Header{"X-Tenant": {"prefix"}}}, true, "allowed"},
		{"header suffix", []*warrenv1.Authorization{allowAPI}, Request{Source: client, Method: "GET", Path: "/exact", Header: http.Header{"X-Tenant": {"zsuf"}}}, true, "allowed"},
		{"exact path only", []*warrenv1.Authorization{allowAPI}, Request{Source: client, Method: "GET", Path: "/exact/", Header: http.Header{"X-Tenant": {"a"}}}, false, "no-allow-match"},
		{"prefix needs the slash", []*warrenv1.Authorization{allowAPI}, Request{Source: client, Method: "GET", Path: "/api", Header: http.Header{"X-Tenant": {"a"}}}, false, "no-allow-match"},
		{"method", []*warrenv1.Authorization{allowAPI}, Request{Source: client, Method: "POST", Path: "/api/x", Header: http.Header{"X-Tenant": {"a"}}}, false, "no-allow-match"},
		{"identity prefix", []*warrenv1.Authorization{allowAPI, allowAdmin}, Request{Source: ops, Port: 80, Method: "DELETE", Path: "/"}, true, "allowed"},
		{"not identity", []*warrenv1.Authorization{allowAPI, allowAdmin}, Request{Source: intern, Port: 80, Path: "/"}, false, "no-allow-match"},
		{"port", []*warrenv1.Authorization{allowAdmin}, Request{Source: ops, Port: 81, Path: "/"}, false, "no-allow-match"},
		{"anonymous never matches identities", []*warrenv1.Authorization{allowAdmin}, Request{Port: 80}, false, "no-allow-match"},
		{"deny wins", []*warrenv1.Authorization{allowAdmin, deny}, Request{Source: ops, Port: 80, Path: "/api/secret"}, false, "deny-policy"},
		{"deny by namespace", []*warrenv1.Authorization{deny}, Request{Source: Source{Namespace: "legacy"}, Path: "/"}, false, "deny-policy"},
		// TCP: L7 rules never allow; a DENY's L7 rule applies on its L4 part.
		{"tcp allow with L7 rule", []*warrenv1.Authorization{allowAPI}, Request{Source: client, L4Only: true}, false, "no-allow-match"},
		{"tcp allow L4 rule", []*warrenv1.Authorization{allowAdmin}, Request{Source: ops, Port: 80, L4Only: true}, true, "allowed"},
		{"tcp deny with L7 rule denies", []*warrenv1.Authorization{allowAdmin, deny}, Request{Source: ops, Port: 80, L4Only: true}, false, "deny-policy"},
		{"allow without rules allows nothing", []*warrenv1.Authorization{{Name: "empty"}}, Request{Source: client}, false, "no-allow-match"},
	} {
		d := Evaluate(c.policies, &c.q)
		if d.Allow != c.allow || d.Reason != c.reason {
			t.Errorf("%s: %+v, want allow=%v %s", c.name, d, c.allow, c.reason)
		}
	}
}
