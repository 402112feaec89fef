package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	gwfake "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned/fake"
)

// fakeServer serves recorded files by path (path → file under testdata,
// or literal content when the value starts with "{" or "[").
func fakeServer(t *testing.T, routes map[string]string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		src, ok := routes[r.URL.Path]
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error": "not found"}`))
			return
		}
		body := []byte(src)
		if !strings.HasPrefix(src, "{") && !strings.HasPrefix(src, "[") && !strings.HasPrefix(src, "raw:") {
			b, err := os.ReadFile(filepath.Join("testdata", src))
			if err != nil {
				t.Errorf("fake server: %v", err)
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			body = b
		}
		body = []byte(strings.TrimPrefix(string(body), "raw:"))
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func addrOf(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

// fakeIstiod serves the recorded syncz, a status, the CA and the
// translation of the recorded mesh.
func fakeIstiod(t *testing.T, syncz string) *httptest.Server {
	t.Helper()
	m := testMesh(t, "mesh")
	tr, err := m.out.YAML()
	if err != nil {
		t.Fatal(err)
	}
	return fakeServer(t, map[string]string{
		"/debug/syncz":       syncz,
		"/debug/status":      `{"connected": 3, "byKind": {"waypoint": 1, "ztunnel": 2}, "resources": {}, "generation": 42, "debounce": "20ms", "pushes": 61, "pushBytes": 40211, "states": {"NACKED": 1, "STALE": 1, "SYNCED": 11}}`,
		"/debug/ca":          `{"trustDomain": "cluster.local", "roots": [{"subject": "O=warren", "serial": "1f", "notAfter": "2026-09-20T00:00:00Z"}]}`,
		"/debug/translation": "raw:" + string(tr),
	})
}

// fakeKube is a cluster with istiod-lite, two ztunnels and a waypoint.
func fakeKube() *kubeClients {
	pod := func(ns, name, node, image string, labels map[string]string, ready bool) *corev1.Pod {
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Spec:   corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: strings.Split(name, "-")[0], Image: image}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}}}
	}
	wp := map[string]string{"gateway.networking.k8s.io/gateway-name": "waypoint", "app.kubernetes.io/managed-by": "istiod-lite"}
	cs := kubefake.NewClientset(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "warren-system", Name: "istiod-lite"}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "istiod-lite"}}},
		pod("warren-system", "istiod-lite-7f9c-abcde", "node-a", "warren.local/istiod-lite:v0.3.0", map[string]string{"app": "istiod-lite"}, true),
		pod("warren-system", "ztunnel-a", "node-a", "warren.local/ztunnel:v0.3.0", map[string]string{"app": "ztunnel"}, true),
		pod("warren-system", "ztunnel-b", "node-b", "warren.local/ztunnel:v0.2.1", map[string]string{"app": "ztunnel"}, false),
		pod("shop", "waypoint-5d8f7-x2x9q", "node-b", "warren.local/waypoint:v0.3.0", wp, true),
	)
	return &kubeClients{core: cs, gw: gwfake.NewSimpleClientset(), namespace: "default", host: "https://fake-apiserver"}
}
