package xdsconfig

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	"github.com/warren-mesh/warren/certs"
	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/file"
	"github.com/warren-mesh/warren/istiod-lite/translate"
	"github.com/warren-mesh/warren/istiod-lite/xds/client"
	"github.com/warren-mesh/warren/waypoint"
)

const meshYAML = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: warren-waypoint}
spec: {controllerName: warren.io/waypoint-controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {warren.io/dataplane-mode: ambient, warren.io/use-waypoint: waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec:
  gatewayClassName: warren-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata: {name: waypoint, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: mesh, port: 15008}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]
  selector: {app: echo}
---
apiVersion: v1
kind: Pod
metadata: {name: echo-0, namespace: shop, labels: {app: echo}}
spec:
  serviceAccountName: echo
  nodeName: node-a
  containers: [{name: echo, image: echo, ports: [{containerPort: 8080}]}]
status:
  phase: Running
  podIP: 10.244.1.10
  conditions: [{type: Ready, status: "True"}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: echo, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: echo, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: echo, port: 80}]
`

func translated(t *testing.T) *translate.Output {
	t.Helper()
	snap, err := file.Parse("mesh.yaml", []byte(meshYAML))
	if err != nil {
		t.Fatal(err)
	}
	return translate.Translate(model.NewIndex(snap))
}

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

func newCA(t *testing.T) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA(certs.Options{TrustDomain: td, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func newHandler(t *testing.T, roots ...*certs.CA) (*Handler, *waypoint.Store, *certs.TrustBundle) {
	t.Helper()
	store := waypoint.NewStore(waypoint.StoreOptions{})
	bundle := certs.NewTrustBundle(td)
	for _, ca := range roots {
		bundle.Set(append(bundle.Roots(), ca.Bundle().Roots()...))
	}
	h, err := New(Options{Store: store, Bundle: bundle})
	if err != nil {
		t.Fatal(err)
	}
	return h, store, bundle
}

func msgs[V proto.Message](m map[string]V) map[string]proto.Message {
	out := map[string]proto.Message{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func bundleMsg(tdName string, cas ...*certs.CA) *warrenv1.TrustBundle {
	tb := &warrenv1.TrustBundle{TrustDomain: tdName}
	for _, ca := range cas {
		tb.RootsPem = append(tb.RootsPem, string(ca.Bundle().PEM()))
	}
	return tb
}

func TestApplyAndNACK(t *testing.T) {
	out := translated(t)
	h, store, _ := newHandler(t, newCA(t))
	const key = "shop/echo.shop.svc.cluster.local"
	if err := h.Synced(); err == nil {
		t.Fatal("Synced before any update")
	}
	for _, step := range []struct {
		typeURL string
		ups     map[string]proto.Message
	}{
		{client.TypeWorkload, msgs(out.Workloads)},
		{client.TypeService, msgs(out.Services)},
		{client.TypeAuthorization, nil},
		{client.TypeL7Service, msgs(out.L7Services)},
	} {
		if err := h.Apply(step.typeURL, step.ups, nil); err != nil {
			t.Fatalf("apply %s: %v", step.typeURL, err)
		}
	}
	if err := h.Synced(); err == nil || !strings.Contains(err.Error(), "TrustBundle") || strings.Contains(err.Error(), "L7Service") {
		t.Fatalf("Synced without a trust bundle = %v, want it to name only TrustBundle", err)
	}
	good := store.Config().L7Services[key]
	if good == nil || !proto.Equal(good, out.L7Services[key]) {
		t.Fatalf("store holds %v", good)
	}
	v := store.Version()

	// A route table that does not compile: NACK, last good kept.
	bad := proto.Clone(good).(*warrenv1.L7Service)
	bad.Ports[0].Producer.Routes[0].Match.Path = &warrenv1.PathMatch{Type: warrenv1.MatchType_REGEX, Value: "(["}
	err := h.Apply(client.TypeL7Service, map[string]proto.Message{key: bad}, nil)
	if err == nil || !strings.Contains(err.Error(), "L7Service") {
		t.Fatalf("bad regex accepted: %v", err)
	}
	if got := store.Config().L7Services[key]; !proto.Equal(got, good) || store.Version() != v {
		t.Fatal("a rejected update changed the store")
	}
	st := h.Status()["L7Service"]
	if st.Rejected != 1 || st.Applied != 1 || st.LastError == "" || st.Resources != 1 {
		t.Errorf("status after NACK: %+v", st)
	}

	// The wrong message type and a key that does not match its resource.
	if err := h.Apply(client.TypeService, map[string]proto.Message{"shop/x": &warrenv1.Workload{}}, nil); err == nil {
		t.Error("a Workload accepted as a Service")
	}
	if err := h.Apply(client.TypeService, map[string]proto.Message{"shop/other": out.Services[key]}, nil); err == nil {
		t.Error("a Service under another key accepted")
	}
	if err := h.Apply(client.TypeAuthorization, map[string]proto.Message{"shop/nil": (*warrenv1.Authorization)(nil)}, nil); err == nil {
		t.Error("a nil Authorization accepted")
	}
	// A later good update clears the error; removals apply.
	if err := h.Apply(client.TypeL7Service, nil, []string{key, "never/held"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := store.Config().L7Services[key]; ok {
		t.Error("removal not applied")
	}
	if st := h.Status()["L7Service"]; st.LastError != "" || st.Resources != 0 {
		t.Errorf("status after a good update: %+v", st)
	}
}

func TestTrustBundle(t *testing.T) {
	oldCA, newCAx := newCA(t), newCA(t)
	h, _, bundle := newHandler(t, oldCA)
	if err := h.Apply(client.TypeTrustBundle, map[string]proto.Message{client.TrustBundleName: bundleMsg("cluster.local", oldCA, newCAx)}, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(bundle.Roots()); n != 2 || !bundle.Contains(newCAx.Bundle().Roots()[0]) {
		t.Fatalf("bundle holds %d roots after the rotation bundle", n)
	}
	for name, c := range map[string]struct {
		name string
		msg  proto.Message
	}{
		"foreign trust domain": {client.TrustBundleName, bundleMsg("evil.org", newCAx)},
		"no root":              {client.TrustBundleName, bundleMsg("cluster.local")},
		"garbage PEM":          {client.TrustBundleName, &warrenv1.TrustBundle{TrustDomain: "cluster.local", RootsPem: []string{"nope"}}},
		"not a CA":             {client.TrustBundleName, &warrenv1.TrustBundle{TrustDomain: "cluster.local", RootsPem: []string{leafPEM(t, newCAx)}}},
		"other name":           {"other", bundleMsg("cluster.local", newCAx)},
		"wrong type":           {client.TrustBundleName, &warrenv1.Workload{}},
	} {
		if err := h.Apply(client.TypeTrustBundle, map[string]proto.Message{c.name: c.msg}, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if len(bundle.Roots()) != 2 {
			t.Fatalf("%s: a rejected bundle changed the roots", name)
		}
	}
	// Rotation done: the old root leaves.
	if err := h.Apply(client.TypeTrustBundle, map[string]proto.Message{client.TrustBundleName: bundleMsg("cluster.local", newCAx)}, nil); err != nil {
		t.Fatal(err)
	}
	if bundle.Contains(oldCA.Bundle().Roots()[0]) || len(bundle.Roots()) != 1 {
		t.Error("retired root still trusted")
	}
	// A removal keeps the roots.
	if err := h.Apply(client.TypeTrustBundle, nil, []string{client.TrustBundleName}); err != nil || len(bundle.Roots()) != 1 {
		t.Errorf("removal: err %v, %d roots", err, len(bundle.Roots()))
	}
}

func leafPEM(t *testing.T, ca *certs.CA) string {
	t.Helper()
	svid, err := ca.NewSVID(spiffeid.RequireFromString("spiffe://cluster.local/ns/a/sa/b"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return string(certs.EncodeCertificates(svid.Certificates[:1]))
}

// TestFileRoundTrip: what `warrenctl x translate` prints (translate's
// YAML) loads into exactly the translated resources.
func TestFileRoundTrip(t *testing.T) {
	out := translated(t)
	ca := newCA(t)
	out.TrustBundle = bundleMsg("cluster.local", ca)
	doc, err := out.YAML()
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseFile(doc)
	if err != nil {
		t.Fatalf("parse translate output: %v", err)
	}
	h, store, bundle := newHandler(t)
	if err := h.ReplaceAll(r); err != nil {
		t.Fatal(err)
	}
	cfg := store.Config()
	check := func(kind string, got, want map[string]proto.Message) {
		if len(got) != len(want) {
			t.Errorf("%s: %d resources, want %d", kind, len(got), len(want))
		}
		for k, w := range want {
			if !proto.Equal(got[k], w) {
				t.Errorf("%s %s differs after the round trip", kind, k)
			}
		}
	}
	check("l7services", msgs(cfg.L7Services), msgs(out.L7Services))
	check("services", msgs(cfg.Services), msgs(out.Services))
	check("workloads", msgs(cfg.Workloads), msgs(out.Workloads))
	if !bundle.Contains(ca.Bundle().Roots()[0]) {
		t.Error("trust bundle section not applied")
	}
	if err := h.Synced(); err != nil {
		t.Errorf("Synced after a file load: %v", err)
	}

	for name, bad := range map[string]string{
		"unknown section": "routes: {}\n",
		"unknown field":   "services: {shop/x: {hostname: x, namespace: shop, colour: blue}}\n",
		"not a mapping":   "- a\n- b\n",
		"bad YAML":        "services: {\n",
	} {
		if _, err := ParseFile([]byte(bad)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if _, err := ParseFile([]byte("status: {x: 1}\nwaypoints: []\ndiagnostics: []\n")); err != nil {
		t.Errorf("ignored sections: %v", err)
	}
}

func TestWatchFile(t *testing.T) {
	out := translated(t)
	doc, err := out.YAML()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	h, store, _ := newHandler(t, newCA(t))
	var loads, fails atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- h.WatchFile(ctx, path, WatchOptions{Interval: 10 * time.Millisecond,
			OnLoad: func() { loads.Add(1) }, OnError: func(error) { fails.Add(1) }})
	}()
	waitFor(t, "first load", func() bool { return loads.Load() == 1 })
	if len(store.Config().L7Services) != 1 {
		t.Fatal("first load not applied")
	}
	// A broken edit keeps the last good configuration.
	os.WriteFile(path, []byte("l7services: {shop/x: {nope: 1}}\n"), 0o644)
	waitFor(t, "the bad edit to be reported", func() bool { return fails.Load() == 1 })
	if len(store.Config().L7Services) != 1 {
		t.Fatal("a bad edit changed the configuration")
	}
	// A good edit (no L7Services) applies.
	os.WriteFile(path, []byte("services: {}\n"), 0o644)
	waitFor(t, "the good edit", func() bool { return loads.Load() == 2 })
	if len(store.Config().L7Services) != 0 {
		t.Fatal("good edit not applied")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := h.WatchFile(context.Background(), filepath.Join(t.TempDir(), "missing"), WatchOptions{}); err == nil {
		t.Error("a missing file did not fail the first load")
	}
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
