package main

// Parity with the data plane: trace's route matching and authorization
// must decide exactly as the waypoint does (waypoint/router and
// waypoint/authz). A generated corpus of matches × requests is run
// through both. If the waypoint's semantics change, this test fails and
// trace must follow.

import (
	"math/rand/v2"
	"net/http"
	"testing"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/waypoint/authz"
	"github.com/warren-mesh/warren/waypoint/router"
)

var (
	parityPaths   = []string{"/", "/api", "/api/", "/api/v1", "/apix", "/api/v1/items", "/upload/42", "/upload/x", "/a/../api", "/./api/./v1", "/admin", "/admin/users"}
	parityValues  = []string{"/", "/api", "/api/", "/api/v1", "/upload/[0-9]+", "/admin", "/a.*", "/api/v1/items"}
	parityHeaders = []string{"x-canary", "x-env", "host"}
	parityHValues = []string{"true", "1", "prod", "web.shop", "pro.*"}
	parityMethods = []string{"", "GET", "POST"}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func randomMatch(r *rand.Rand) *warrenv1.RouteMatch {
	m := &warrenv1.RouteMatch{Method: pick(r, parityMethods)}
	if r.IntN(5) > 0 {
		m.Path = &warrenv1.PathMatch{Type: warrenv1.MatchType(r.IntN(3)), Value: pick(r, parityValues)}
	}
	for range r.IntN(3) {
		m.Headers = append(m.Headers, &warrenv1.HeaderMatch{Type: warrenv1.MatchType(r.IntN(2) * 2), Name: pick(r, parityHeaders), Value: pick(r, parityHValues)})
	}
	if r.IntN(4) == 0 {
		m.QueryParams = append(m.QueryParams, &warrenv1.QueryParamMatch{Type: warrenv1.MatchType(r.IntN(2) * 2), Name: "v", Value: pick(r, []string{"1", "2", "[0-9]"})})
	}
	if r.IntN(6) == 0 {
		m.Grpc = &warrenv1.GRPCMethodMatch{Type: warrenv1.MatchType(r.IntN(2) * 2), Service: pick(r, []string{"", "pkg.Svc", "pkg\\..*"}), Method: pick(r, []string{"", "Get", "G.*"})}
	}
	return m
}

func randomRequest(r *rand.Rand) (*matchRequest, *http.Request) {
	path := pick(r, append(parityPaths, "/pkg.Svc/Get", "/pkg.Svc/Put"))
	method := pick(r, []string{"GET", "POST", "PUT"})
	host := pick(r, []string{"web.shop", "web.shop:80", "api"})
	query := pick(r, []string{"", "v=1", "v=2&v=1", "v=%zz", "w=1"})
	h := http.Header{}
	for range r.IntN(3) {
		h.Add(pick(r, parityHeaders[:2]), pick(r, parityHValues))
	}
	req, _ := http.NewRequest(method, "http://"+host+path+"?"+query, nil)
	if query == "" {
		req.URL.RawQuery = ""
	}
	req.Header = h
	req.Host = host
	return &matchRequest{Method: method, Path: normalizePath(req.URL.EscapedPath()), RawQuery: req.URL.RawQuery, Host: host, Header: h}, req
}

func TestRouteMatchingParityWithWaypoint(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	checked, matched := 0, 0
	for range 3000 {
		m := randomMatch(r)
		tbl, err := router.CompileTable(&warrenv1.RouteTable{Routes: []*warrenv1.Route{{Match: m}}})
		if err != nil {
			continue // the waypoint rejects the table (bad regex); translation never emits one
		}
		for range 8 {
			q, req := randomRequest(r)
			if got := router.NormalizePath(req.URL.EscapedPath()); got != q.Path {
				t.Fatalf("path normalization differs on %q: waypoint %q, trace %q", req.URL.EscapedPath(), got, q.Path)
			}
			rq := router.FromHTTP(req, q.Path)
			want := tbl.Match(&rq) != nil
			got, why := matchRoute(m, q)
			if got != want {
				t.Fatalf("match %v on %s %s?%s host %s headers %v: trace %v (%s), waypoint %v", m, q.Method, q.Path, q.RawQuery, q.Host, q.Header, got, why, want)
			}
			if !got && why == "" {
				t.Fatalf("no reason for a non-match of %v", m)
			}
			checked++
			if got {
				matched++
			}
		}
	}
	if checked < 10000 || matched < 500 || checked-matched < 500 {
		t.Fatalf("corpus too weak: %d checked, %d matched", checked, matched)
	}
}

func TestAuthorizationParityWithWaypoint(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ids := []string{"", "spiffe://cluster.local/ns/a/sa/x", "spiffe://cluster.local/ns/b/sa/y"}
	checked, allowed := 0, 0
	for range 2000 {
		all := map[string]*warrenv1.Authorization{}
		var names []string
		var list []*warrenv1.Authorization
		for i := range 1 + r.IntN(3) {
			p := &warrenv1.Authorization{Namespace: "ns", Name: "p" + itoa(i), Action: warrenv1.Authorization_Action(r.IntN(2))}
			for range r.IntN(3) {
				rule := &warrenv1.AuthorizationRule{}
				if r.IntN(2) == 0 {
					rule.Identities = []string{pick(r, []string{"*", "spiffe://cluster.local/ns/a/*", ids[1]})}
				}
				if r.IntN(3) == 0 {
					rule.NotNamespaces = []string{pick(r, []string{"a", "b"})}
				}
				if r.IntN(3) == 0 {
					rule.Ports = []uint32{pick(r, []uint32{80, 8080})}
				}
				if r.IntN(2) == 0 {
					rule.Paths = []string{pick(r, []string{"/admin*", "/api", "*"})}
				}
				if r.IntN(3) == 0 {
					rule.Methods = []string{pick(r, []string{"GET", "POST"})}
				}
				if r.IntN(4) == 0 {
					rule.Headers = []*warrenv1.HeaderCondition{{Name: "x-env", Values: []string{pick(r, []string{"prod", "*od", "pr*"})}}}
				}
				p.Rules = append(p.Rules, rule)
			}
			all[p.Namespace+"/"+p.Name] = p
			names = append(names, p.Namespace+"/"+p.Name)
			list = append(list, p)
		}
		for range 6 {
			id := pick(r, ids)
			q := authzQuery{Identity: id, Namespace: identityNamespace(id), Port: pick(r, []uint32{80, 8080}), Method: pick(r, []string{"GET", "POST"}),
				Path: pick(r, parityPaths), Header: http.Header{"X-Env": {pick(r, []string{"prod", "dev"})}}, L4Only: r.IntN(3) == 0}
			want := authz.Evaluate(list, &authz.Request{Source: authz.Source{Identity: q.Identity, Namespace: q.Namespace}, Port: q.Port,
				Method: q.Method, Path: q.Path, Header: q.Header, L4Only: q.L4Only})
			got := evaluatePolicies(names, all, q)
			if got.Allow != want.Allow || (want.Policy != "" && got.Policy != want.Policy) {
				t.Fatalf("policies %v query %+v: trace %+v, waypoint %+v", list, q, got, want)
			}
			checked++
			if got.Allow {
				allowed++
			}
		}
	}
	if checked < 10000 || allowed < checked/10 || checked-allowed < checked/10 {
		t.Fatalf("corpus too weak: %d checked, %d allowed", checked, allowed)
	}
}
