package client

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

func TestNodeIDs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want NodeID
	}{
		{"ztunnel~node-a", ZtunnelNodeID("node-a")},
		{"ztunnel~ip-10-0-0-1.ec2.internal", ZtunnelNodeID("ip-10-0-0-1.ec2.internal")},
		{"waypoint~shop/wp1~wp1-7d9f-abcde", WaypointNodeID("shop", "wp1", "wp1-7d9f-abcde")},
	} {
		got, err := ParseNodeID(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseNodeID(%q) = %+v, %v", tc.in, got, err)
			continue
		}
		if got.String() != tc.in {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
	if got := WaypointNodeID("shop", "wp1", "p").GatewayRef(); got != "shop/wp1" {
		t.Errorf("GatewayRef = %q", got)
	}
	if got := ZtunnelNodeID("n").GatewayRef(); got != "" {
		t.Errorf("ztunnel GatewayRef = %q", got)
	}
	for in, want := range map[string]string{
		"":                         "want ztunnel~<node>",
		"node-a":                   "want ztunnel~<node>",
		"ztunnel~":                 "empty node name",
		"ztunnel~Node-A":           `character 'N'`,
		"ztunnel~a~b":              `character '~'`,
		"ztunnel~-a":               "must start and end",
		"sidecar~x":                `unknown proxy kind "sidecar"`,
		"waypoint~shop~pod":        "waypoint~<namespace>/<gateway>~<pod>",
		"waypoint~shop/wp1":        "waypoint~<namespace>/<gateway>~<pod>",
		"waypoint~shop/wp1~":       "empty pod name",
		"waypoint~/wp1~p":          "empty namespace",
		"waypoint~shop/a/b~p":      `character '/'`,
		"ztunnel~" + long():        "longer than 253",
		"waypoint~shop/wp 1~pod-0": `character ' '`,
	} {
		_, err := ParseNodeID(in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "xds: node id") {
			t.Errorf("ParseNodeID(%q) = %v, want an error containing %q", in, err, want)
		}
	}
}

func long() string { return strings.Repeat("a", 254) }

func TestTypeURLs(t *testing.T) {
	for want, m := range map[string]proto.Message{
		TypeWorkload:      &warrenv1.Workload{},
		TypeService:       &warrenv1.Service{},
		TypeAuthorization: &warrenv1.Authorization{},
		TypeTrustBundle:   &warrenv1.TrustBundle{},
		TypeL7Service:     &warrenv1.L7Service{},
	} {
		if got := TypeURL(m); got != want {
			t.Errorf("TypeURL = %q, want %q", got, want)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	h := HandlerFunc(func(string, map[string]proto.Message, []string) error { return nil })
	ok := Options{Address: "127.0.0.1:15010", NodeID: "ztunnel~n", Types: []string{TypeWorkload}, Handler: h, Insecure: true}
	if _, err := New(ok); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for name, mod := range map[string]func(*Options){
		"no address":   func(o *Options) { o.Address = "" },
		"bad node":     func(o *Options) { o.NodeID = "ztunnel" },
		"no handler":   func(o *Options) { o.Handler = nil },
		"no types":     func(o *Options) { o.Types = nil },
		"no TLS":       func(o *Options) { o.Insecure = false },
		"twice":        func(o *Options) { o.Types = []string{TypeWorkload, TypeWorkload} },
		"in both":      func(o *Options) { o.Names = map[string][]string{TypeWorkload: {"x"}} },
		"empty type":   func(o *Options) { o.Types = []string{""} },
		"empty in map": func(o *Options) { o.Names = map[string][]string{"": {"x"}} },
	} {
		o := ok
		mod(&o)
		if _, err := New(o); err == nil || !strings.HasPrefix(err.Error(), "xds client: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestBackoffIsExponentialJitteredAndBounded(t *testing.T) {
	c := &Client{opts: Options{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second}}
	for attempt, want := range []time.Duration{100, 200, 400, 800, 1600, 2000, 2000} {
		want *= time.Millisecond
		seen := map[time.Duration]bool{}
		for i := 0; i < 50; i++ {
			d := c.backoff(attempt)
			if d < want/2 || d > want {
				t.Fatalf("attempt %d: %s outside [%s, %s]", attempt, d, want/2, want)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("attempt %d: no jitter", attempt)
		}
	}
	if d := c.backoff(1000); d > 2*time.Second {
		t.Errorf("attempt 1000: %s", d)
	}
}

func TestRunRetriesUntilCancelled(t *testing.T) {
	// Nothing listens on this port: the client keeps trying, records why,
	// and returns promptly when its context ends.
	h := HandlerFunc(func(string, map[string]proto.Message, []string) error { return nil })
	c, err := New(Options{Address: "127.0.0.1:1", NodeID: "ztunnel~n", Types: []string{TypeWorkload}, Handler: h, Insecure: true,
		InitialBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for c.State().LastError == "" {
		if time.Now().After(deadline) {
			t.Fatal("no connection error recorded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := c.State()
	if st.Connected || !strings.Contains(st.LastError, "127.0.0.1:1") {
		t.Errorf("state: %+v", st)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	select {
	case <-c.Synced():
		t.Error("synced without ever connecting")
	default:
	}
}

func TestFileToken(t *testing.T) {
	p := filepath.Join(t.TempDir(), "token")
	if _, err := FileToken(p)(); err == nil {
		t.Error("missing file accepted")
	}
	if err := os.WriteFile(p, []byte("  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := FileToken(p)(); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: %v", err)
	}
	if err := os.WriteFile(p, []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := FileToken(p)(); err != nil || tok != "abc" {
		t.Errorf("token %q, %v", tok, err)
	}
}
