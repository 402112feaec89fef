package cluster_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/warren-mesh/warren/e2e/cluster"
)

// TestSmokeUpDown is the short cluster test for `make test`: one node, the
// pause and echo images only (no cluster DNS), up, a pod answering through its Service, down,
// nothing left. It runs as root when the Kubernetes binaries are built and
// the node packages installed (make test prepares both), and skips with the
// reason otherwise, or under -short.
func TestSmokeUpDown(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the smoke test starts a real cluster (~20 s)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, cgroups, containerd")
	}
	o := cluster.IsolatedOptions("wks", 2)
	o.Nodes = 1
	o.SkipDeps, o.SkipBuild = true, true
	o.SkipDNS = true // Warren's own images and pause only
	if why := haveBinaries(o); why != "" {
		t.Skip(why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	exclusive(ctx, t, o)
	before, err := cluster.TakeSnapshot(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	upDownOnce(ctx, t, o, before)
}
