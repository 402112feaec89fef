//go:build conformance

package conformance

import (
	"context"
	"flag"
	"os"
	"testing"
	"time"

	"sigs.k8s.io/gateway-api/conformance"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
)

// TestConformance prepares the local cluster (Setup) and runs the upstream
// Gateway API conformance suite exactly as its own TestConformance does,
// configured by the suite's flags after -args. hack/conformance.sh (make
// conformance) builds the command; run one test with
// CONFORMANCE_RUN_TEST=<ShortName> make conformance (--run-test).
//
// Environment: CONFORMANCE_KEEP_CLUSTER=1 leaves a cluster this test brought
// up running afterwards (a cluster that was already running always stays);
// CONFORMANCE_SKIP_INSTALL=1 runs the suite without installing Warren (a
// baseline against plain Kubernetes).
func TestConformance(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the local cluster (network namespaces, cgroups, containerd)")
	}
	ctx := context.Background()
	labels := suite.ParseKeyValuePairs(flag.Lookup("namespace-labels").Value.String())
	start := time.Now()
	env, err := Setup(ctx, Options{
		Namespaces:      []string{suite.MeshNamespace, suite.MeshConsumerNamespace},
		NamespaceLabels: labels,
		SkipInstall:     os.Getenv("CONFORMANCE_SKIP_INSTALL") != "",
		Logf:            t.Logf,
	})
	if env != nil && env.Started && os.Getenv("CONFORMANCE_KEEP_CLUSTER") == "" {
		t.Cleanup(func() {
			t0 := time.Now()
			if err := env.Teardown(context.Background()); err != nil {
				t.Errorf("teardown: %v", err)
			}
			t.Logf("TIMING cluster down %s", time.Since(t0).Round(time.Millisecond))
		})
	}
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	for _, s := range env.Steps {
		t.Logf("TIMING setup %-40s %s", s.Name, s.Took.Round(time.Millisecond))
	}
	t.Logf("TIMING setup total %s; Warren installed: %t (images built %v; workloads not ready: %v); waypoints %v (programmed %v)",
		time.Since(start).Round(time.Millisecond), env.Installed, env.Images, env.InstallErr, env.Waypoints, env.Programmed)
	t.Setenv("KUBECONFIG", env.Cluster.Kubeconfig())

	suiteStart := time.Now()
	conformance.RunConformance(t)
	t.Logf("TIMING suite %s", time.Since(suiteStart).Round(time.Millisecond))
}
