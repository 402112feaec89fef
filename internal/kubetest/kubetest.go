// Package kubetest starts a real kube-apiserver and etcd (envtest) for
// istiod-lite's integration tests. The binaries come from the project's own
// module-proxy build (`make kube-bins`, cached under .cache/kube); tests
// skip with that instruction when they are missing, and `make test` always
// builds them first, so CI never skips.
package kubetest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KubeVersion is the Kubernetes release the test binaries are built from.
const KubeVersion = "v1.36.3"

// AssetsDir returns the directory holding etcd and kube-apiserver:
// $KUBEBUILDER_ASSETS, or the repository's .cache/kube/<version>/bin.
func AssetsDir() (string, error) {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".cache", "kube", KubeVersion, "bin"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kubetest: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Env is a running API server.
type Env struct {
	Config *rest.Config
	Client kubernetes.Interface
}

// Start launches etcd and kube-apiserver for the test and stops them in
// t.Cleanup. It skips the test, saying how to build them, if the binaries
// are missing.
func Start(t testing.TB, crdPaths ...string) *Env {
	t.Helper()
	dir, err := AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, bin := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			t.Skipf("needs a real kube-apiserver: %s missing (run `make kube-bins`, which `make test` does first)", filepath.Join(dir, bin))
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths:     crdPaths,
		ErrorIfCRDPathMissing: len(crdPaths) > 0,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("kubetest: start API server: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("kubetest: stop API server: %v", err)
		}
	})
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Config: cfg, Client: cs}
}
