package waypoint

import (
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// failFirst answers 'code' to the first n requests carrying each X-Key,
// then 200.
func failFirst(code int) http.HandlerFunc {
	var mu sync.Mutex
	count := map[string]int{}
	return func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		k := r.Header.Get("X-Key")
		count[k]++
		c := count[k]
		mu.Unlock()
		n, _ := strconv.Atoi(r.Header.Get("X-Fail"))
		if c <= n {
			w.Header().Set("X-Attempt", strconv.Itoa(c))
			http.Error(w, "failure "+strconv.Itoa(c), code)
			return
		}
		w.Header().Set("X-Attempt", strconv.Itoa(c))
		_, _ = w.Write([]byte("ok"))
	}
}

// TestRetries follows tests/httproute-retry.go: attempts are retries
// after the first try, only listed codes are retried, and the last
// failure goes back when attempts run out.
func TestRetries(t *testing.T) {
	a := startBackend(t, "echo-1")
	a.setHandler(failFirst(500))
	rules := `  - matches: [{path: {type: PathPrefix, value: /retry/code-500-attempts-3}}]
    retry: {codes: [500], attempts: 3, backoff: 1ms}
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /retry/all-attempts-2}}]
    retry: {codes: [500, 502, 503, 504], attempts: 2, backoff: 1ms}
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /retry/backoff}}]
    retry: {codes: [500], attempts: 2, backoff: 100ms}
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /none}}]
    backendRefs: [{name: echo, port: 80}]
`
	h := newHarness(t, mesh([]pod{a.pod("echo")}, httpRoute("retries", "shop", rules)), harnessOpts{})
	addr := h.listen(echoDest())
	key := 0
	try := func(path string, fail int) reply {
		key++
		return h.do(addr, "POST", path, map[string]string{"X-Key": strconv.Itoa(key), "X-Fail": strconv.Itoa(fail)}, "body-"+strconv.Itoa(key))
	}
	for _, c := range []struct {
		path         string
		fail, status int
		attempts     string
	}{
		{"/retry/code-500-attempts-3", 2, 200, "3"},
		{"/retry/code-500-attempts-3", 3, 200, "4"},
		{"/retry/code-500-attempts-3", 4, 500, "4"},
		{"/retry/all-attempts-2", 1, 200, "2"},
		{"/retry/all-attempts-2", 3, 500, "3"},
		{"/none", 1, 500, "1"},
	} {
		r := try(c.path, c.fail)
		if r.status != c.status || r.header.Get("X-Attempt") != c.attempts {
			t.Errorf("%s failing %d times: %d after %s attempts, want %d after %s", c.path, c.fail, r.status, r.header.Get("X-Attempt"), c.status, c.attempts)
		}
	}
	// The original failure's body goes back when attempts run out.
	if r := try("/retry/all-attempts-2", 9); r.body != "failure 3\n" {
		t.Errorf("last failure body %q", r.body)
	}
	// Bodies are replayed on every attempt.
	for _, s := range a.requests()[len(a.requests())-3:] {
		if s.Body != "body-"+strconv.Itoa(key) {
			t.Errorf("replayed body %q", s.Body)
		}
	}
	// Codes not listed are not retried.
	a.setHandler(failFirst(503))
	if r := try("/retry/code-500-attempts-3", 2); r.status != 503 || r.header.Get("X-Attempt") != "1" {
		t.Errorf("503 with codes [500]: %d after %s attempts", r.status, r.header.Get("X-Attempt"))
	}
	// Backoff: retries wait at least the backoff.
	a.setHandler(failFirst(500))
	before := len(a.requests())
	if r := try("/retry/backoff", 2); r.status != 200 {
		t.Fatalf("backoff route: %d", r.status)
	}
	_ = before
	if got := h.counter(metricRetries, map[string]string{"destination_service": echoKey}); got < 2+3+1+2 {
		t.Errorf("retries counted %v", got)
	}
}

func TestRetryBackoffSpacing(t *testing.T) {
	a := startBackend(t, "echo-1")
	var mu sync.Mutex
	var at []time.Time
	a.setHandler(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		w.WriteHeader(503)
	})
	rules := `  - retry: {codes: [503], attempts: 2, backoff: 100ms}
    backendRefs: [{name: echo, port: 80}]
`
	h := newHarness(t, mesh([]pod{a.pod("echo")}, httpRoute("backoff", "shop", rules)), harnessOpts{})
	addr := h.listen(echoDest())
	if r := h.get(addr, "/", nil); r.status != 503 {
		t.Fatalf("status %d", r.status)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(at) != 3 {
		t.Fatalf("%d attempts, want 3", len(at))
	}
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < 100*time.Millisecond {
			t.Errorf("gap %d is %v, want >= 100ms", i, gap)
		}
	}
}

// TestRetryBudget drives an always-failing backend and proves retries
// stay within the XBackendTrafficPolicy budget while the original
// failures go back, with the refusals counted.
func TestRetryBudget(t *testing.T) {
	a := startBackend(t, "echo-1")
	a.setHandler(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "original failure", 500)
	})
	rules := `  - retry: {codes: [500], attempts: 3, backoff: 1ms}
    backendRefs: [{name: echo, port: 80}]
`
	policy := `apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XBackendTrafficPolicy
metadata: {name: budget, namespace: shop, generation: 1}
spec:
  targetRefs: [{group: "", kind: Service, name: echo}]
  retryConstraint:
    budget: {percent: 20, interval: 10s}
    minRetryRate: {count: 2, interval: 1s}
`
	h := newHarness(t, mesh([]pod{a.pod("echo")}, httpRoute("r", "shop", rules), policy), harnessOpts{})
	if got := h.store.Config().Services[echoKey].GetTrafficPolicy().GetRetryBudget().GetPercent(); got != 20 {
		t.Fatalf("budget not translated: percent %d", got)
	}
	addr := h.listen(echoDest())
	const n = 200
	start := time.Now()
	for i := range n {
		r := h.get(addr, "/", nil)
		if r.status != 500 || r.body != "original failure\n" {
			t.Fatalf("request %d: %d %q, want the original failure", i, r.status, r.body)
		}
	}
	elapsed := time.Since(start)
	retries := h.counter(metricRetries, map[string]string{"destination_service": echoKey})
	refused := h.counter(metricBudgetExceeded, map[string]string{"destination_service": echoKey})
	hits := float64(a.hits.Load())
	// Without a budget: 3 retries per request = 600. With it: retries are
	// at most 20% of all requests sent (r <= 0.2(n+r), so r <= n/4), plus
	// the minimum rate of 2 per second, over the elapsed seconds.
	minAllowance := 2 * (elapsed.Seconds() + 2)
	if retries > n/4+minAllowance {
		t.Errorf("%v retries for %d requests in %v: over budget (%v)", retries, n, elapsed, n/4+minAllowance)
	}
	if retries < 2 {
		t.Errorf("only %v retries: the budget should allow some", retries)
	}
	if hits != n+retries {
		t.Errorf("backend saw %v requests, want %d + %v retries", hits, n, retries)
	}
	if refused < n/2 {
		t.Errorf("refused retries counted %v, want most of %d", refused, n)
	}
	if !containsLine(h.log.String(), `"flags":"RBE,URX"`) && !containsLine(h.log.String(), `"flags":"RBE"`) {
		t.Errorf("access log does not flag the budget")
	}
}

func TestTimeouts(t *testing.T) {
	a := startBackend(t, "echo-1")
	a.setHandler(func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("sleep"))
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
		_, _ = w.Write([]byte("late"))
	})
	rules := `  - matches: [{path: {type: PathPrefix, value: /backend}}]
    timeouts: {request: 10s, backendRequest: 100ms}
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /request}}]
    timeouts: {request: 300ms}
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /retried}}]
    timeouts: {request: 500ms, backendRequest: 100ms}
    retry: {codes: [504], attempts: 50, backoff: 1ms}
    backendRefs: [{name: echo, port: 80}]
`
	h := newHarness(t, mesh([]pod{a.pod("echo")}, httpRoute("t", "shop", rules)), harnessOpts{})
	addr := h.listen(echoDest())
	for _, c := range []struct {
		target  string
		status  int
		atLeast time.Duration
	}{
		{"/backend?sleep=0s", 200, 0},
		{"/backend?sleep=3s", 504, 100 * time.Millisecond},
		{"/request?sleep=3s", 504, 300 * time.Millisecond},
		{"/request?sleep=1ms", 200, 0},
		// per-attempt timeouts retried until the whole request times out
		{"/retried?sleep=3s", 504, 500 * time.Millisecond},
	} {
		start := time.Now()
		r := h.get(addr, c.target, nil)
		el := time.Since(start)
		if r.status != c.status || el < c.atLeast || el > 2500*time.Millisecond {
			t.Errorf("%s: %d after %v, want %d after >= %v", c.target, r.status, el, c.status, c.atLeast)
		}
	}
	log := h.log.String()
	if !containsLine(log, `"flags":"UT"`) || !containsLine(log, `"flags":"RT"`) {
		t.Errorf("access log flags: %s", log)
	}
}
