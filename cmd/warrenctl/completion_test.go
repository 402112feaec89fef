package main

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestCompletion: the completion command writes scripts, and flags and
// arguments complete statically and from the cluster.
func TestCompletion(t *testing.T) {
	noKubeconfig(t)
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		out, errOut, code := cli(t, nil, "completion", sh)
		if code != 0 || errOut != "" || !strings.Contains(out, "warrenctl") {
			t.Errorf("completion %s: code %d stderr %q", sh, code, errOut)
		}
	}
	kc := fakeKube()
	_, err := kc.gw.GatewayV1().Gateways("shop").Create(context.Background(), &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "waypoint", Namespace: "shop"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "warren-waypoint"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = kc.gw.GatewayV1().Gateways("shop").Create(context.Background(), &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "north", Namespace: "shop"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "warren"}}, metav1.CreateOptions{})
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "proxy-status", "-o", ""}, []string{"table", "json", "yaml"}},
		{[]string{"__complete", "waypoint", "apply", "--for", ""}, []string{"service", "workload", "all", "none"}},
		{[]string{"__complete", "analyze", "--fail-on", "w"}, []string{"error", "warning", "none"}},
		{[]string{"__complete", "waypoint", "status", "-n", "shop", ""}, []string{"waypoint"}},
		{[]string{"__complete", "x", "describe", "pod", "-n", "warren-system", "zt"}, []string{"ztunnel-a", "ztunnel-b"}},
		{[]string{"__complete", "x", "trace", "--from", ""}, nil},
	} {
		out, errOut, code := cli(t, &env{kubeOverride: kc}, c.args...)
		if code != 0 {
			t.Fatalf("%v: code %d %s", c.args, code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		got := lines[:len(lines)-1] // the last line is the directive
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%v: got %q, want %q", c.args, got, c.want)
		}
	}
}

func TestPickZtunnel(t *testing.T) {
	kc := fakeKube()
	ctx := context.Background()
	if _, err := pickZtunnel(ctx, kc, "warren-system", "app=ztunnel", ""); err == nil || err.Error() != "2 ztunnels (on node-a, node-b): choose one with --node" {
		t.Errorf("two ztunnels: %v", err)
	}
	p, err := pickZtunnel(ctx, kc, "warren-system", "app=ztunnel", "node-b")
	if err != nil || p.Name != "ztunnel-b" {
		t.Errorf("node-b: %v %v", p, err)
	}
	if _, err := pickZtunnel(ctx, kc, "warren-system", "app=ztunnel", "node-z"); err == nil || err.Error() != "no ztunnel on node node-z (ztunnels run on: node-a, node-b)" {
		t.Errorf("node-z: %v", err)
	}
	if _, err := pickZtunnel(ctx, kc, "warren-system", "app=zt", ""); err == nil || err.Error() != "no ztunnel pods in warren-system (selector app=zt): is the data plane installed?" {
		t.Errorf("none: %v", err)
	}
	// Through the command: several ztunnels and no --node is a usage error.
	_, errOut, code := cli(t, &env{kubeOverride: kc}, "ztunnel-config", "workloads")
	if code != exitUsage || errOut != "warrenctl: 2 ztunnels (on node-a, node-b): choose one with --node\n" {
		t.Errorf("command: %d %q", code, errOut)
	}
	// A fake cluster cannot port-forward: the error says so instead of hanging.
	_, errOut, code = cli(t, &env{kubeOverride: kc}, "ztunnel-config", "workloads", "--node", "node-a")
	if code != 1 || errOut != "warrenctl: ztunnel warren-system/ztunnel-a: port-forward needs a real API server\n" {
		t.Errorf("fake port-forward: %d %q", code, errOut)
	}
}

// TestZtunnelAdminErrors: an admin endpoint that predates the contract
// is named as such.
func TestZtunnelAdminErrors(t *testing.T) {
	old := addrOf(fakeServer(t, map[string]string{}))
	_, errOut, code := cli(t, nil, "ztunnel-config", "services", "--ztunnel-addr", old)
	want := "warrenctl: ztunnel admin at " + old + ": /config_dump: not served (HTTP 404): this ztunnel's admin API predates the contract warrenctl reads (docs/warrenctl.md)\n"
	if code != 1 || errOut != want {
		t.Errorf("got %d %q", code, errOut)
	}
	bad := addrOf(fakeServer(t, map[string]string{"/config_dump": `{"workloads": {"a/b": {"tunnel": 7.5}}}`}))
	_, errOut, code = cli(t, nil, "ztunnel-config", "workloads", "--ztunnel-addr", bad)
	if code != 1 || !strings.HasPrefix(errOut, "warrenctl: ztunnel admin at "+bad+": /config_dump workloads: a/b: ") {
		t.Errorf("got %d %q", code, errOut)
	}
}
