package kubetest

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// GatewayClient returns a Gateway API clientset for the API server.
func (e *Env) GatewayClient(t testing.TB) gwclient.Interface {
	t.Helper()
	c, err := gwclient.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// DynamicClient returns a dynamic client for the API server.
func (e *Env) DynamicClient(t testing.TB) dynamic.Interface {
	t.Helper()
	c, err := dynamic.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Eventually polls cond every 50ms until it holds, failing the test with
// what after timeout. Integration tests run on loaded machines: give
// timeouts in tens of seconds; they catch hangs, not slowness.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Requests counts the requests made through a config from CountingConfig.
type Requests struct {
	mu  sync.Mutex
	log []string // "METHOD path"
}

// Writes returns the requests that were not reads (GET; watches are GETs)
// and whose path satisfies match (all when match is nil).
func (r *Requests) Writes(match func(path string) bool) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.log {
		method, path, _ := strings.Cut(l, " ")
		if method != http.MethodGet && (match == nil || match(path)) {
			out = append(out, l)
		}
	}
	return out
}

type countingTransport struct {
	next http.RoundTripper
	r    *Requests
}

func (c countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.r.mu.Lock()
	c.r.log = append(c.r.log, req.Method+" "+req.URL.Path)
	c.r.mu.Unlock()
	return c.next.RoundTrip(req)
}

// CountingConfig returns a copy of cfg whose clients record every request
// they send, for tests that prove what a component wrote.
func CountingConfig(cfg *rest.Config) (*rest.Config, *Requests) {
	out := rest.CopyConfig(cfg)
	r := &Requests{}
	out.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingTransport{next: rt, r: r} })
	return out, r
}
