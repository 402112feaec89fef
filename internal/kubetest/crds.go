package kubetest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// GatewayAPIModule is the module whose CRDs the mesh tests install.
const GatewayAPIModule = "sigs.k8s.io/gateway-api"

// RepoRoot returns the directory holding the repository's go.mod, found by
// walking up from the working directory (a test runs in its package's
// directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("kubetest: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kubetest: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// GatewayAPICRDDir returns the experimental-channel CRD directory of the
// Gateway API module this repository builds against, read in place from the
// module cache (`go list -m -f {{.Dir}} sigs.k8s.io/gateway-api` +
// config/crd/experimental): the CRDs always match the Go types, and nothing
// is copied into the repository.
func GatewayAPICRDDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", GatewayAPIModule)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("kubetest: go list -m %s: %v: %s", GatewayAPIModule, err, strings.TrimSpace(stderr.String()))
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "experimental")
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("kubetest: Gateway API CRDs: %w (is the module downloaded? `go mod download %s`)", err, GatewayAPIModule)
	}
	return dir, nil
}

// WarrenCRDDir returns the repository's manifests/crds, which holds the
// CRDs of Warren's own APIs.
func WarrenCRDDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "manifests", "crds")
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("kubetest: Warren CRDs: %w", err)
	}
	return dir, nil
}

// MeshCRDDirs returns the Gateway API experimental CRD directory and
// Warren's CRD directory, failing the test if either is missing.
func MeshCRDDirs(t testing.TB) []string {
	t.Helper()
	gw, err := GatewayAPICRDDir()
	if err != nil {
		t.Fatal(err)
	}
	warren, err := WarrenCRDDir()
	if err != nil {
		t.Fatal(err)
	}
	return []string{gw, warren}
}

// StartMesh is Start with every CRD the mesh reads installed: the Gateway
// API experimental channel and Warren's own.
func StartMesh(t testing.TB) *Env {
	t.Helper()
	return Start(t, MeshCRDDirs(t)...)
}

// InstallCRDs installs CRDs from directories (or files) and the given
// objects into a running API server and waits until they are served.
func (e *Env) InstallCRDs(t testing.TB, paths []string, crds ...*apiextensionsv1.CustomResourceDefinition) {
	t.Helper()
	_, err := envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{
		Paths:              paths,
		CRDs:               crds,
		ErrorIfPathMissing: true,
		MaxTime:            60 * time.Second,
	})
	if err != nil {
		t.Fatalf("kubetest: install CRDs: %v", err)
	}
}
