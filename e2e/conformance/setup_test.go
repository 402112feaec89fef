package conformance

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/gateway-api/pkg/features"
)

func TestFeaturesFile(t *testing.T) {
	fs, err := ReadFeatures("features.txt")
	if err != nil {
		t.Fatal(err)
	}
	// The profiles' core features and the nine Mesh extended ones Warren
	// claims (issue 8).
	for _, want := range []features.FeatureName{features.SupportMesh, features.SupportHTTPRoute, features.SupportGRPCRoute} {
		if !slices.Contains(fs, string(want)) {
			t.Errorf("features.txt lacks %s", want)
		}
	}
	for _, f := range features.MeshExtendedFeatures.UnsortedList() {
		if !slices.Contains(fs, string(f.Name)) {
			t.Errorf("features.txt lacks mesh feature %s", f.Name)
		}
	}
}

func TestParseFeaturesRejects(t *testing.T) {
	for _, in := range []string{
		"",                       // nothing claimed
		"# only a comment\n",     // nothing claimed
		"Mesh\nMesh\n",           // twice
		"Mesh,HTTPRoute\n",       // one per line
		"MeshTeleportation\n",    // not a feature
		"Mesh\nhttproute\n",      // names are case-sensitive
		"Mesh HTTPRoute\n",       // one per line
		"Mesh\n\tGRPC Route\n",   // spaces inside
		"Mesh # ok\nFooBar\n",    // second line unknown
		"Gateway\nMeshFoo # x\n", // unknown after a known one
	} {
		if _, err := parseFeatures([]byte(in), "x"); err == nil {
			t.Errorf("%q: accepted", in)
		}
	}
	got, err := parseFeatures([]byte("# c\n\n Mesh # core\nHTTPRoute\n"), "x")
	if err != nil || strings.Join(got, ",") != "Mesh,HTTPRoute" {
		t.Fatalf("got %v %v", got, err)
	}
}

func TestReadManifests(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"b/20-deploy.yaml":   "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n  namespace: ns1\n---\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: ns1\n",
		"a/10-ns.yml":        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns1\n",
		"kustomization.yaml": "resources: [a, b]\n",
		"list.json":          `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"ns1"}}]}`,
		"README.md":          "not a manifest",
	}
	for p, s := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := ReadManifests(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+o.GetName())
	}
	if want := "Namespace/ns1 Deployment/d Service/s ConfigMap/c"; strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("kind: Service\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadManifests(dir); err == nil {
		t.Fatal("an object without apiVersion and name was accepted")
	}
}

// The CRDs come from the module cache: the experimental channel of the
// gateway-api version in go.mod, with the annotations the suite checks.
func TestExperimentalCRDs(t *testing.T) {
	repo := filepath.Join("..", "..")
	dir, err := GatewayAPIDir(context.Background(), repo)
	if err != nil {
		t.Skip(err) // no module cache and no network
	}
	objs, err := ReadManifests(filepath.Join(dir, experimentalCRDDir))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		kinds[o.GetName()] = true
		a := o.GetAnnotations()
		if a["gateway.networking.k8s.io/channel"] != "experimental" || a["gateway.networking.k8s.io/bundle-version"] != "v1.6.3" {
			t.Errorf("%s: annotations %v", o.GetName(), a)
		}
	}
	for _, want := range []string{"httproutes.gateway.networking.k8s.io", "grpcroutes.gateway.networking.k8s.io", "gateways.gateway.networking.k8s.io", "xmeshes.gateway.networking.x-k8s.io"} {
		if !kinds[want] {
			t.Errorf("no CRD %s among %v", want, kinds)
		}
	}
}

func TestWaypointObject(t *testing.T) {
	w := WaypointObject("gateway-conformance-mesh")
	if w.GetKind() != "Gateway" || w.GetName() != "waypoint" || w.GetNamespace() != "gateway-conformance-mesh" {
		t.Fatalf("%v", w.Object)
	}
	class, _, _ := unstructured.NestedString(w.Object, "spec", "gatewayClassName")
	ls, _, _ := unstructured.NestedSlice(w.Object, "spec", "listeners")
	if class != "warren-waypoint" || len(ls) != 1 {
		t.Fatalf("%v", w.Object)
	}
	l := ls[0].(map[string]any)
	if l["port"] != int64(15008) || l["protocol"] != "HBONE" || l["name"] != "mesh" {
		t.Fatalf("listener %v", l)
	}
}

func TestWarrenImages(t *testing.T) {
	objs, err := decodeManifests([]byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: istiod-lite, namespace: warren-system}
spec:
  template:
    spec:
      initContainers:
      - {name: init, image: warren.local/pause:3.10}
      containers:
      - name: istiod-lite
        image: warren.local/istiod-lite:dev
        args: ["-waypoint-image=warren.local/waypoint:dev", "-log-format=json"]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ztunnel, namespace: warren-system}
spec:
  template:
    spec:
      containers:
      - {name: ztunnel, image: warren.local/ztunnel:v0.1}
      - {name: other, image: registry.example/ztunnel:dev}
`))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(WarrenImages(objs), " ")
	if want := "warren.local/istiod-lite:dev warren.local/waypoint:dev warren.local/ztunnel:v0.1"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
