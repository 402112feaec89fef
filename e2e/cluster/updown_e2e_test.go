//go:build e2e

package cluster_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/warren-mesh/warren/e2e/cluster"
)

// TestUpDownTwice brings a two-node cluster up and down twice and compares
// processes, mounts, links, routes, firewall rules, cgroups, sysctls and the
// shared paths with the machine before the first up.
func TestUpDownTwice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, cgroups, containerd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	o := cluster.IsolatedOptions("wkd", 3)
	o.Nodes = 2
	exclusive(ctx, t, o)
	before, err := cluster.TakeSnapshot(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		t.Logf("round %d", i)
		upDownOnce(ctx, t, o, before)
	}
}
