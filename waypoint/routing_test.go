package waypoint

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// rule renders one HTTPRoute rule that tags requests with x-rule: tag.
func rule(tag, matches, backend string) string {
	return fmt.Sprintf(`  - matches: %s
    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-rule, value: %s}]}}]
    backendRefs: [{name: %s, port: 80}]
`, matches, tag, backend)
}

func TestRouteMatchKinds(t *testing.T) {
	a, b := startBackend(t, "echo-1"), startBackend(t, "echo-v2-1")
	rules := rule("exact", `[{path: {type: Exact, value: /exact}}]`, "echo") +
		rule("prefix", `[{path: {type: PathPrefix, value: /prefix}}]`, "echo") +
		rule("prefix-slash", `[{path: {type: PathPrefix, value: /slash/}}]`, "echo-v2") +
		rule("regex", `[{path: {type: RegularExpression, value: "/re/[0-9]+"}}]`, "echo-v2") +
		rule("header", `[{path: {type: PathPrefix, value: /h}, headers: [{name: X-Version, value: two}]}]`, "echo-v2") +
		rule("header-re", `[{path: {type: PathPrefix, value: /h}, headers: [{type: RegularExpression, name: x-tenant, value: "t-[a-c]"}]}]`, "echo") +
		rule("query", `[{path: {type: PathPrefix, value: /q}, queryParams: [{name: animal, value: whale}]}]`, "echo-v2") +
		rule("query-re", `[{path: {type: PathPrefix, value: /q}, queryParams: [{type: RegularExpression, name: color, value: "bl.*"}]}]`, "echo") +
		rule("method", `[{method: DELETE, path: {type: PathPrefix, value: /items}}]`, "echo-v2") +
		rule("items", `[{path: {type: PathPrefix, value: /items}}]`, "echo")
	h := newHarness(t, mesh([]pod{a.pod("echo"), b.pod("echo-v2")}, httpRoute("kinds", "shop", rules)), harnessOpts{})
	addr := h.listen(echoDest())
	cases := []struct {
		method, target string
		hdr            map[string]string
		rule, backend  string // rule "" = 404
	}{
		{"GET", "/exact", nil, "exact", "echo-1"},
		{"GET", "/exact/", nil, "", ""},
		{"GET", "/exactly", nil, "", ""},
		{"GET", "/prefix", nil, "prefix", "echo-1"},
		{"GET", "/prefix/", nil, "prefix", "echo-1"},
		{"GET", "/prefix/a/b", nil, "prefix", "echo-1"},
		{"GET", "/prefixes", nil, "", ""},
		// a trailing "/" on the prefix is ignored; element-wise matching
		{"GET", "/slash", nil, "prefix-slash", "echo-v2-1"},
		{"GET", "/slash/x", nil, "prefix-slash", "echo-v2-1"},
		{"GET", "/slashx", nil, "", ""},
		{"GET", "/re/123", nil, "regex", "echo-v2-1"},
		{"GET", "/re/12a", nil, "", ""},
		{"GET", "/re/123/x", nil, "", ""},
		{"GET", "/h", map[string]string{"X-Version": "two"}, "header", "echo-v2-1"},
		{"GET", "/h", map[string]string{"X-Version": "Two"}, "", ""},
		{"GET", "/h/x", map[string]string{"x-tenant": "t-b"}, "header-re", "echo-1"},
		{"GET", "/h/x", map[string]string{"x-tenant": "t-d"}, "", ""},
		{"GET", "/q?animal=whale", nil, "query", "echo-v2-1"},
		{"GET", "/q?animal=whale&animal=dolphin", nil, "query", "echo-v2-1"},
		{"GET", "/q?animal=dolphin&animal=whale", nil, "", ""},
		{"GET", "/q?color=blue", nil, "query-re", "echo-1"},
		{"GET", "/q?color=red", nil, "", ""},
		{"DELETE", "/items/1", nil, "method", "echo-v2-1"},
		{"GET", "/items/1", nil, "items", "echo-1"},
		// dot segments are resolved before matching
		{"GET", "/nothing/../exact", nil, "exact", "echo-1"},
		{"GET", "/", nil, "", ""},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.target, func(t *testing.T) {
			r := h.do(addr, c.method, c.target, c.hdr, "")
			if c.rule == "" {
				if r.status != http.StatusNotFound {
					t.Fatalf("want 404, got %d (rule %v)", r.status, r.seen.Header["X-Rule"])
				}
				return
			}
			if r.status != 200 {
				t.Fatalf("want 200, got %d: %s", r.status, r.body)
			}
			if got := strings.Join(r.seen.Header["X-Rule"], ","); got != c.rule || r.seen.Backend != c.backend {
				t.Fatalf("rule %q backend %q, want %q %q", got, r.seen.Backend, c.rule, c.backend)
			}
		})
	}
}

// TestPrecedenceFollowsTableOrder checks the engine applies the table in
// the order the control plane computed: Exact before RegularExpression
// before the longest prefix, more header matches first (the upstream
// HTTPRouteMatching / path-match-order expectations).
func TestPrecedenceFollowsTableOrder(t *testing.T) {
	a, b := startBackend(t, "echo-1"), startBackend(t, "echo-v2-1")
	rules := rule("match-exact", `[{path: {type: Exact, value: /match}}]`, "echo") +
		rule("match-exact-exact", `[{path: {type: Exact, value: /match/exact}}]`, "echo-v2") +
		rule("prefix-match", `[{path: {type: PathPrefix, value: /match/}}]`, "echo") +
		rule("prefix-match-prefix", `[{path: {type: PathPrefix, value: /match/prefix/}}]`, "echo-v2") +
		rule("root", `[{path: {type: PathPrefix, value: /}}]`, "echo") +
		rule("v2", `[{path: {type: PathPrefix, value: /v2}}]`, "echo-v2") +
		rule("root-two", `[{path: {type: PathPrefix, value: /}, headers: [{name: version, value: two}]}]`, "echo-v2")
	h := newHarness(t, mesh([]pod{a.pod("echo"), b.pod("echo-v2")}, httpRoute("order", "shop", rules)), harnessOpts{})
	addr := h.listen(echoDest())
	for _, c := range []struct {
		target, version, rule string
	}{
		{"/match", "", "match-exact"},
		{"/match/exact", "", "match-exact-exact"},
		{"/match/exact/one", "", "prefix-match"},
		{"/match/prefix/any", "", "prefix-match-prefix"},
		{"/match/any", "", "prefix-match"},
		{"/v2", "", "v2"},
		{"/v2/example", "", "v2"},
		{"/v2example", "", "root"},
		{"/", "two", "root-two"},
		{"/", "", "root"},
		{"/foo/v2/example", "", "root"},
	} {
		hdr := map[string]string{}
		if c.version != "" {
			hdr["version"] = c.version
		}
		r := h.get(addr, c.target, hdr)
		if got := strings.Join(r.seen.Header["X-Rule"], ","); r.status != 200 || got != c.rule {
			t.Errorf("%s (version %q): %d rule %q, want %q", c.target, c.version, r.status, got, c.rule)
		}
	}
}

func TestConsumerTableReplacesProducerForItsNamespace(t *testing.T) {
	a, b := startBackend(t, "echo-1"), startBackend(t, "echo-v2-1")
	producer := httpRoute("producer", "shop", `  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: echo-v2, port: 80}]
  - backendRefs: [{name: echo, port: 80}]
`)
	consumer := httpRoute("consumer", "client", `  - matches: [{path: {type: PathPrefix, value: /only}}]
    backendRefs: [{name: echo-v2, namespace: shop, port: 80}]
`)
	h := newHarness(t, mesh([]pod{a.pod("echo"), b.pod("echo-v2")}, producer, consumer), harnessOpts{})
	fromClient := h.listen(Destination{Service: echoKey, Port: 80, SourceNamespace: "client"})
	fromOther := h.listen(Destination{Service: echoKey, Port: 80, SourceNamespace: "other"})
	fromNone := h.listen(Destination{Service: echoKey, Port: 80})

	// Clients in "client" get only the consumer table: /only → v2, the
	// rest 404 (the producer's catch-all does not apply to them).
	if r := h.get(fromClient, "/only/x", nil); r.status != 200 || r.seen.Backend != "echo-v2-1" {
		t.Errorf("consumer /only: %d %q", r.status, r.seen.Backend)
	}
	if r := h.get(fromClient, "/anything", nil); r.status != 404 {
		t.Errorf("consumer /anything: %d, want 404", r.status)
	}
	if r := h.get(fromClient, "/v2", nil); r.status != 404 {
		t.Errorf("consumer /v2: %d, want 404 (producer table replaced)", r.status)
	}
	// Everyone else gets the producer table.
	for _, addr := range []string{fromOther, fromNone} {
		if r := h.get(addr, "/anything", nil); r.status != 200 || r.seen.Backend != "echo-1" {
			t.Errorf("producer /anything: %d %q", r.status, r.seen.Backend)
		}
		if r := h.get(addr, "/v2/x", nil); r.status != 200 || r.seen.Backend != "echo-v2-1" {
			t.Errorf("producer /v2/x: %d %q", r.status, r.seen.Backend)
		}
		if r := h.get(addr, "/only", nil); r.status != 200 || r.seen.Backend != "echo-1" {
			t.Errorf("producer /only: %d %q", r.status, r.seen.Backend)
		}
	}
}

func TestDefaultRoutingWithoutTable(t *testing.T) {
	a1, a2 := startBackend(t, "echo-1"), startBackend(t, "echo-2")
	notReady := startBackend(t, "echo-3")
	p3 := notReady.pod("echo")
	p3.notReady = true
	h := newHarness(t, mesh([]pod{a1.pod("echo"), a2.pod("echo"), p3}), harnessOpts{})
	addr := h.listen(echoDest())
	got := map[string]int{}
	for range 40 {
		r := h.get(addr, "/any/path", nil)
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		got[r.seen.Backend]++
	}
	if got["echo-1"] == 0 || got["echo-2"] == 0 || got["echo-3"] != 0 {
		t.Fatalf("default routing should use the ready endpoints only: %v", got)
	}
	// An unknown destination Service is not configured yet: 503.
	other := h.listen(Destination{Service: "shop/nope.shop.svc.cluster.local", Port: 80})
	if r := h.get(other, "/", nil); r.status != http.StatusServiceUnavailable {
		t.Fatalf("unknown service: %d", r.status)
	}
}

func TestInvalidBackendAnswers500ForItsShare(t *testing.T) {
	a := startBackend(t, "echo-1")
	rules := `  - matches: [{path: {type: PathPrefix, value: /split}}]
    backendRefs: [{name: echo, port: 80, weight: 50}, {name: ghost, port: 80, weight: 50}]
  - matches: [{path: {type: PathPrefix, value: /zero}}]
    backendRefs: [{name: echo, port: 80, weight: 0}]
  - matches: [{path: {type: PathPrefix, value: /ext}}]
    filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Foo, name: bar}}]
    backendRefs: [{name: echo, port: 80}]
`
	h := newHarness(t, mesh([]pod{a.pod("echo")}, httpRoute("bad", "shop", rules)), harnessOpts{})
	addr := h.listen(echoDest())
	codes := map[int]int{}
	for range 200 {
		codes[h.get(addr, "/split", nil).status]++
	}
	if codes[200] < 60 || codes[500] < 60 || codes[200]+codes[500] != 200 {
		t.Errorf("50/50 split with an invalid backend: %v", codes)
	}
	if r := h.get(addr, "/zero", nil); r.status != 500 {
		t.Errorf("all weights 0: %d, want 500", r.status)
	}
	if r := h.get(addr, "/ext", nil); r.status != 500 {
		t.Errorf("unsupported filter: %d, want 500", r.status)
	}
}
