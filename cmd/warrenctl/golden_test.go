package main

import (
	"strings"
	"testing"
)

// TestGolden runs every command on recorded inputs and compares stdout
// with testdata/golden/<name> in table, JSON and YAML form.
func TestGolden(t *testing.T) {
	noKubeconfig(t)
	istiod := addrOf(fakeIstiod(t, "syncz.json"))
	broken := addrOf(fakeServer(t, map[string]string{"/debug/syncz": "broken-syncz.json"}))
	zt := addrOf(fakeServer(t, map[string]string{"/config_dump": "ztunnel/config_dump.json", "/debug/connections": "ztunnel/connections.json"}))
	type tc struct {
		name string
		args []string
		kube bool // use the fake cluster
		code int
	}
	var cases []tc
	formats := func(name string, code int, kube bool, args ...string) {
		for _, f := range []struct{ ext, flag string }{{"txt", "table"}, {"json", "json"}, {"yaml", "yaml"}} {
			cases = append(cases, tc{name + "." + f.ext, append(append([]string{}, args...), "-o", f.flag), kube, code})
		}
	}
	one := func(name string, code int, args ...string) { cases = append(cases, tc{name, args, false, code}) }

	formats("version", 0, true, "version", "--istiod-addr", istiod)
	one("version-client.txt", 0, "version", "--client")

	formats("proxy-status", 0, false, "proxy-status", "--istiod-addr", istiod)
	one("proxy-status-node-b.txt", 0, "proxy-status", "node-b", "--istiod-addr", istiod)
	one("proxy-status-waypoints.txt", 0, "proxy-status", "--kind", "waypoint", "--istiod-addr", istiod)
	one("proxy-status-waypoint-detail.json", 0, "proxy-status", "waypoint~shop/waypoint~waypoint-5d8f7-x2x9q", "--istiod-addr", istiod, "-o", "json")

	for _, s := range []string{"workloads", "services", "policies", "certificates", "connections"} {
		one("ztunnel-config-"+s+".txt", 0, "ztunnel-config", s, "--ztunnel-addr", zt)
	}
	formats("ztunnel-config-all", 0, false, "ztunnel-config", "all", "--ztunnel-addr", zt)
	one("ztunnel-config-workloads-shop.txt", 0, "ztunnel-config", "workloads", "-n", "shop", "--ztunnel-addr", zt)
	one("ztunnel-config-certificates.json", 0, "ztunnel-config", "certificates", "--ztunnel-addr", zt, "-o", "json")

	one("waypoint-generate.yaml", 0, "waypoint", "generate", "-n", "shop")
	one("waypoint-generate-all.json", 0, "waypoint", "generate", "edge-wp", "-n", "shop", "--for", "all", "-o", "json")
	formats("waypoint-list", 0, false, "waypoint", "list", "-A", "-f", "testdata/mesh")
	formats("waypoint-status", 0, false, "waypoint", "status", "-n", "shop", "-f", "testdata/mesh")
	one("waypoint-status-billing.txt", 0, "waypoint", "status", "wp", "-n", "billing", "-f", "testdata/broken")

	formats("analyze-broken", exitFindings, false, "analyze", "-f", "testdata/broken", "--trust-bundle", "testdata/roots.pem", "--istiod-addr", broken)
	one("analyze-billing.txt", exitFindings, "analyze", "-f", "testdata/broken", "-n", "billing")
	one("analyze-mesh.txt", 0, "analyze", "-f", "testdata/mesh")
	one("analyze-mesh-fail-on-warning.txt", exitFindings, "analyze", "-f", "testdata/mesh", "--fail-on", "warning")
	formats("analyze-codes", 0, false, "analyze", "--list-codes")

	formats("describe-service-web", 0, false, "x", "describe", "service", "web", "-n", "shop", "-f", "testdata/mesh")
	formats("describe-pod-curl", 0, false, "x", "describe", "pod", "client/curl-0", "-f", "testdata/mesh")
	one("describe-pod-web-v1-0.txt", 0, "x", "describe", "pod", "web-v1-0", "-n", "shop", "-f", "testdata/mesh")
	one("describe-service-direct.txt", 0, "x", "describe", "svc", "shop/direct", "-f", "testdata/mesh")
	one("describe-service-ledger.txt", 0, "x", "describe", "service", "ledger", "-n", "billing", "-f", "testdata/broken")

	formats("trace-split", 0, false, "x", "trace", "-f", "testdata/mesh", "--from", "pod/frontend/fe-0", "http://web.shop/api/items")
	one("trace-consumer.txt", 0, "x", "trace", "-f", "testdata/mesh", "--from", "client/curl-0", "http://web.shop/catalog")
	one("trace-404.txt", 0, "x", "trace", "-f", "testdata/mesh", "--from", "frontend/fe-0", "http://web.shop/apix")
	one("trace-redirect.txt", 0, "x", "trace", "-f", "testdata/mesh", "--from", "frontend/fe-0", "http://web.shop/old/a?b=c")
	one("trace-deny.txt", 0, "x", "trace", "-f", "testdata/mesh", "--from", "frontend/fe-0", "http://web.shop/admin")
	one("trace-grpc.txt", 0, "x", "trace", "-f", "testdata/mesh", "--from", "frontend/fe-0", "grpc://greeter.shop:7070/helloworld.Greeter/SayHello")
	one("trace-post-canary.txt", 0, "x", "trace", "-f", "testdata/mesh", "--from", "fe-0", "-n", "frontend", "-X", "post", "-H", "x-canary: true", "http://web.shop/api/v1")
	one("trace-unenrolled-strict.txt", 0, "x", "trace", "-f", "testdata/mesh", "--from", "legacy/legacy-0", "http://api.shop/")
	one("trace-no-waypoint.txt", 0, "x", "trace", "-f", "testdata/mesh", "--from", "frontend/fe-0", "http://direct.shop/")
	one("trace-from-istiod.txt", 0, "x", "trace", "--istiod-addr", istiod, "--from", "frontend/fe-0", "http://web.shop/login")

	formats("translate-mesh", 0, false, "x", "translate", "-f", "testdata/mesh")
	one("translate-waypoint-l7services.yaml", 0, "x", "translate", "-f", "testdata/mesh", "--proxy", "waypoint/shop/waypoint", "--section", "l7services")
	one("translate-ztunnel.txt", 0, "x", "translate", "-f", "testdata/mesh", "--proxy", "ztunnel~node-a", "-o", "table")

	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.name] {
			t.Fatalf("duplicate golden %s", c.name)
		}
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			e := &env{}
			if c.kube {
				e.kubeOverride = fakeKube()
			}
			out, errOut, code := cli(t, e, c.args...)
			if code != c.code {
				t.Fatalf("exit code %d, want %d; stderr: %s", code, c.code, errOut)
			}
			for _, a := range []string{istiod, broken, zt} {
				out = strings.ReplaceAll(out, a, "ADDR")
			}
			golden(t, c.name, out)
		})
	}
}
