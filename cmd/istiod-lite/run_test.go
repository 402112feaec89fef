package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/examples"
	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	caclient "github.com/warren-mesh/warren/istiod-lite/ca/client"
	"github.com/warren-mesh/warren/istiod-lite/xds/client"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// recorder is an xDS handler keeping the latest resources.
type recorder struct {
	mu  sync.Mutex
	res map[string]map[string]proto.Message
	ch  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{res: map[string]map[string]proto.Message{}, ch: make(chan struct{}, 100)}
}

func (r *recorder) Apply(typeURL string, ups map[string]proto.Message, rems []string) error {
	r.mu.Lock()
	if r.res[typeURL] == nil {
		r.res[typeURL] = map[string]proto.Message{}
	}
	for k, v := range ups {
		r.res[typeURL][k] = v
	}
	for _, k := range rems {
		delete(r.res[typeURL], k)
	}
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
	return nil
}

func (r *recorder) get(typeURL, name string) proto.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.res[typeURL][name]
}

func (r *recorder) count(typeURL string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.res[typeURL])
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFileModeEndToEnd runs the control plane without a cluster: YAML in a
// directory, proxies authenticated by bootstrap tokens over TLS, config
// pushed over delta xDS, live edits pushed, bad edits refused with the
// last good config kept, and node-scoped certificates.
func TestFileModeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	if err := os.Mkdir(cfg, 0o755); err != nil {
		t.Fatal(err)
	}
	mesh, err := examples.FS().Open("mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	meshYAML, _ := io.ReadAll(mesh)
	write := func(data []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(cfg, "mesh.yaml"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(meshYAML)
	const ztTok, wpTok = "ztunnel-node-a-0123456789", "waypoint-server-0123456789"
	tokens := filepath.Join(dir, "tokens.yaml")
	os.WriteFile(tokens, []byte("tokens:\n- {token: "+ztTok+", serviceAccount: warren-system/ztunnel, node: node-a}\n- {token: "+wpTok+", serviceAccount: server/waypoint, node: node-b}\n"), 0o600)

	o := options{
		trustDomain: "cluster.local", clusterDomain: "cluster.local", caDataDir: filepath.Join(dir, "ca"),
		caDefaultTTL: certs.DefaultSVIDTTL, caMaxTTL: certs.DefaultMaxTTL,
		grpcAddr: freeAddr(t), monitoringAddr: freeAddr(t), xdsDebounce: 20 * time.Millisecond,
		configDir: cfg, bootstrapTokens: tokens, impersonators: "warren-system/ztunnel",
		systemNamespace: "warren-system", serviceAccount: "istiod-lite", rootCertOut: filepath.Join(dir, "root.pem"),
	}
	logs := &syncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, slog.New(slog.NewTextHandler(logs, nil))) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	waitFor(t, "root-cert-out", func() bool { fi, err := os.Stat(o.rootCertOut); return err == nil && fi.Size() > 0 })
	waitFor(t, "serving", func() bool { return strings.Contains(logs.String(), "configuration published") })
	rootPEM, _ := os.ReadFile(o.rootCertOut)
	roots, err := certs.ParseCertificates(rootPEM)
	if err != nil {
		t.Fatal(err)
	}
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	bundle := certs.NewTrustBundle(td, roots...)
	serverID := spiffeid.RequireFromString("spiffe://cluster.local/ns/warren-system/sa/istiod-lite")

	dial := func(node string, tok string, types []string) *recorder {
		rec := newRecorder()
		cl, err := client.New(client.Options{
			Address: o.grpcAddr, NodeID: node, Types: types,
			TLS: caclient.TLSConfig(o.grpcAddr, bundle, serverID), Token: client.StaticToken(tok), Handler: rec,
		})
		if err != nil {
			t.Fatal(err)
		}
		go cl.Run(ctx)
		return rec
	}
	zt := dial("ztunnel~node-a", ztTok, []string{client.TypeWorkload, client.TypeService, client.TypeTrustBundle})
	wp := dial("waypoint~server/waypoint~waypoint-0", wpTok, []string{client.TypeL7Service, client.TypeService, client.TypeWorkload})
	waitFor(t, "ztunnel config", func() bool { return zt.count(client.TypeWorkload) == 3 && zt.count(client.TypeTrustBundle) == 1 })
	const echo = "server/echo.server.svc.cluster.local"
	weights := func() []uint32 {
		m, _ := wp.get(client.TypeL7Service, echo).(*warrenv1.L7Service)
		if m == nil || len(m.Ports) == 0 || m.Ports[0].Producer == nil {
			return nil
		}
		var w []uint32
		for _, b := range m.Ports[0].Producer.Routes[0].Backends {
			w = append(w, b.Weight)
		}
		return w
	}
	waitFor(t, "waypoint route table 90/10", func() bool { w := weights(); return len(w) == 2 && w[0] == 90 && w[1] == 10 })

	// A live edit reaches the waypoint.
	write(bytes.Replace(bytes.Replace(meshYAML, []byte("weight: 90"), []byte("weight: 50"), 1), []byte("weight: 10"), []byte("weight: 50"), 1))
	waitFor(t, "the 50/50 edit to reach the waypoint", func() bool { w := weights(); return len(w) == 2 && w[0] == 50 && w[1] == 50 })

	// A bad edit is refused with file:line and the last good config stays.
	write(append(append([]byte(nil), meshYAML...), []byte("---\napiVersion: v1\nkind: Service\nmetadata: {name: broken, namespace: server}\nspec: {portz: []}\n")...))
	waitFor(t, "the bad edit to be reported", func() bool {
		return strings.Contains(logs.String(), "mesh.yaml") && strings.Contains(logs.String(), "portz: unknown field")
	})
	time.Sleep(200 * time.Millisecond)
	if w := weights(); len(w) != 2 || w[0] != 50 {
		t.Fatalf("bad edit changed the served config: %v", w)
	}

	// Node-scoped certificates over the same TLS port.
	cac, err := caclient.New(caclient.Options{Address: o.grpcAddr, Roots: bundle, ServerID: serverID, Token: caclient.StaticToken(ztTok)})
	if err != nil {
		t.Fatal(err)
	}
	defer cac.Close()
	if _, err := cac.Sign(ctx, spiffeid.RequireFromString("spiffe://cluster.local/ns/client/sa/curl"), time.Hour); err != nil {
		t.Fatalf("ztunnel on node-a could not get the identity of its pod: %v", err)
	}
	if _, err := cac.Sign(ctx, spiffeid.RequireFromString("spiffe://cluster.local/ns/server/sa/echo"), time.Hour); err == nil || !strings.Contains(err.Error(), "node-b") {
		t.Fatalf("ztunnel on node-a got the identity of a node-b pod: %v", err)
	}

	// Both proxies show in /debug/syncz, acknowledged.
	resp, err := http.Get("http://" + o.monitoringAddr + "/debug/syncz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sz []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&sz); err != nil {
		t.Fatal(err)
	}
	if len(sz) != 2 {
		t.Fatalf("syncz lists %d proxies: %v", len(sz), sz)
	}
}
