package file

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseErrorsNameFileLineAndField(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"syntax", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a\n", "bad.yaml:2: invalid YAML: did not find expected"},
		{"unknown kind", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n", "bad.yaml:6: kind: example.com/v1 Widget is not a kind the file source reads"},
		{"unknown field", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  clusterIP: 10.0.0.1\n  portz: []\n", "bad.yaml:6: portz: unknown field"},
		{"wrong type", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: eighty\n", `bad.yaml:6: spec.ports.port: cannot use string as int32`},
		{"missing name", "apiVersion: v1\nkind: Pod\nmetadata: {namespace: x}\n", "bad.yaml:3: metadata.name: is required"},
		{"no kind", "apiVersion: v1\nmetadata: {name: x}\n", "bad.yaml:1: apiVersion/kind: both are required"},
		{"namespace on cluster-scoped", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: b}\n", "bad.yaml:3: metadata.namespace: Namespace is cluster-scoped"},
		{"duplicate", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n", "bad.yaml:5: metadata.name: Namespace /a is already defined at bad.yaml:1"},
		{"scalar document", "just a string\n", "bad.yaml:1: a document must be a mapping"},
		{"list kind", "apiVersion: v1\nkind: List\nitems: []\n", "bad.yaml:1: kind: List is not supported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tc.yaml))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant prefix %q", err, tc.want)
			}
		})
	}
}

func TestParseKindsAndDefaults(t *testing.T) {
	y := `
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {containers: [{name: c, image: i}]}
---
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: g, namespace: x}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: y}]
  to: [{group: "", kind: Service}]
---
apiVersion: security.warren.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: a, namespace: x}
spec: {action: DENY}
`
	s, err := Parse("ok.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Pods) != 1 || s.Pods[0].Namespace != "default" {
		t.Fatalf("pod namespace not defaulted: %+v", s.Pods)
	}
	if len(s.ReferenceGrants) != 1 || len(s.AuthorizationPolicies) != 1 || s.AuthorizationPolicies[0].Spec.Action != "DENY" {
		t.Fatal("v1beta1 ReferenceGrant or AuthorizationPolicy not read")
	}
}

func TestWatchKeepsLastGoodState(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "mesh.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("apiVersion: v1\nkind: Namespace\nmetadata: {name: one}\n")
	src, err := New(Options{Dir: dir, Debounce: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.Start(ctx, func(e error) { errs <- e })
	time.Sleep(100 * time.Millisecond) // let the watcher register

	ch := src.Changed()
	write("apiVersion: v1\nkind: Namespace\nmetadata: {name: two}\n")
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no reload after a good edit")
	}
	if n := src.Snapshot().Namespaces[0].Name; n != "two" {
		t.Fatalf("namespace %q after reload", n)
	}
	write("apiVersion: v1\nkind: Namespace\nmetadata: {name: three, bogus: 1}\n")
	select {
	case e := <-errs:
		if !strings.Contains(e.Error(), "mesh.yaml:3: bogus: unknown field") {
			t.Fatalf("error %v does not name file, line and field", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("bad edit not reported")
	}
	if n := src.Snapshot().Namespaces[0].Name; n != "two" {
		t.Fatalf("bad edit replaced the last good state (now %q)", n)
	}
	if src.LastError() == nil {
		t.Fatal("LastError not set")
	}
}

func TestNewRejectsBadDirectory(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("apiVersion: v1\nkind: Nope\nmetadata: {name: x}\n"), 0o644)
	if _, err := New(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "a.yaml:2: kind") {
		t.Fatalf("err = %v", err)
	}
	if _, err := New(Options{Dir: filepath.Join(dir, "missing")}); err == nil {
		t.Fatal("missing directory accepted")
	}
}
