package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// unreachableKubeconfig writes a kubeconfig whose API server refuses
// connections.
func unreachableKubeconfig(t *testing.T) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", InsecureSkipTLSVerify: true}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	kc.Contexts["ctx"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u", Namespace: "shop"}
	kc.CurrentContext = "ctx"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBadInput: every mistake is one line on stderr, prefixed
// "warrenctl:", with exit code 1 (2 for usage errors), and nothing on
// stdout.
func TestBadInput(t *testing.T) {
	noKubeconfig(t)
	kcfg := unreachableKubeconfig(t)
	refused := "dial tcp 127.0.0.1:1: connect: connection refused"
	cases := []struct {
		name string
		args []string
		code int
		line string
	}{
		{"unknown pod (describe)", []string{"x", "describe", "pod", "nope", "-n", "shop", "-f", "testdata/mesh"}, 1,
			"warrenctl: pod shop/nope not found in testdata/mesh"},
		{"unknown pod (trace)", []string{"x", "trace", "-f", "testdata/mesh", "--from", "pod/shop/nope", "http://web.shop/"}, 1,
			"warrenctl: pod shop/nope not found"},
		{"unknown service", []string{"x", "describe", "service", "nope", "-n", "shop", "-f", "testdata/mesh"}, 1,
			"warrenctl: service shop/nope not found in testdata/mesh"},
		{"pod without an IP", []string{"x", "trace", "-f", "testdata/errors", "--from", "app/pending-0", "http://x/"}, 1,
			"warrenctl: pod app/pending-0 has no IP yet (phase Pending): it is not running"},
		{"unreachable control plane", []string{"proxy-status", "--istiod-addr", "127.0.0.1:1"}, 1,
			"warrenctl: istiod-lite at 127.0.0.1:1 unreachable: " + refused},
		{"unreachable control plane (trace)", []string{"x", "trace", "--istiod-addr", "127.0.0.1:1", "--from", "a/b", "http://x/"}, 1,
			"warrenctl: istiod-lite at 127.0.0.1:1 unreachable: " + refused},
		{"unreachable ztunnel", []string{"ztunnel-config", "workloads", "--ztunnel-addr", "127.0.0.1:1"}, 1,
			"warrenctl: ztunnel admin at 127.0.0.1:1 unreachable: " + refused},
		{"no kubeconfig (proxy-status)", []string{"proxy-status"}, 1,
			"warrenctl: no kubeconfig: pass --kubeconfig or set KUBECONFIG, or use --istiod-addr HOST:PORT to reach istiod-lite directly"},
		{"no kubeconfig (analyze)", []string{"analyze"}, 1,
			"warrenctl: no kubeconfig: pass --kubeconfig or set KUBECONFIG, or use -f DIR to work offline on a directory of YAML"},
		{"no kubeconfig (waypoint apply)", []string{"waypoint", "apply", "-n", "shop"}, 1,
			"warrenctl: no kubeconfig: pass --kubeconfig or set KUBECONFIG, or warrenctl waypoint generate prints the manifest instead"},
		{"no kubeconfig (version)", []string{"version"}, 1,
			"warrenctl: no kubeconfig: pass --kubeconfig or set KUBECONFIG, or use --client, or --istiod-addr HOST:PORT"},
		{"missing kubeconfig file", []string{"analyze", "--kubeconfig", "/nonexistent/kubeconfig"}, 1,
			"warrenctl: --kubeconfig /nonexistent/kubeconfig: no such file or directory"},
		{"unknown context", []string{"analyze", "--kubeconfig", kcfg, "--context", "nope"}, 1,
			`warrenctl: kubeconfig: context "nope" does not exist`},
		{"unreachable API server", []string{"analyze", "--kubeconfig", kcfg}, 1,
			"warrenctl: cannot reach the Kubernetes API server at https://127.0.0.1:1: " + refused},
		{"unreachable API server (waypoint)", []string{"waypoint", "apply", "--kubeconfig", kcfg}, 1,
			"warrenctl: cannot reach the Kubernetes API server at https://127.0.0.1:1: " + refused},
		{"missing directory", []string{"analyze", "-f", "testdata/nope"}, 1,
			"warrenctl: -f testdata/nope: no such file or directory"},
		{"bad YAML names file and line", []string{"analyze", "-f", "testdata/errors-yaml"}, 1,
			"warrenctl: testdata/errors-yaml/bad.yaml:4: portz: unknown field"},
		{"unknown command", []string{"prxy-status"}, 2, `warrenctl: unknown command "prxy-status" for "warrenctl" (see 'warrenctl --help')`},
		{"unknown subcommand", []string{"waypoint", "lst"}, 2, `warrenctl: unknown command "lst" for "warrenctl waypoint" (see 'warrenctl waypoint --help')`},
		{"unknown flag", []string{"analyze", "--frobnicate"}, 2, "warrenctl: unknown flag: --frobnicate"},
		{"bad output format", []string{"proxy-status", "-o", "xml"}, 2, `warrenctl: invalid argument "xml" for "-o, --output" flag: want table, json or yaml`},
		{"table is not a manifest", []string{"waypoint", "generate", "-o", "table"}, 2, `warrenctl: invalid argument "table" for "-o, --output" flag: want yaml or json`},
		{"missing --from", []string{"x", "trace", "http://x/"}, 2, `warrenctl: required flag(s) "from" not set`},
		{"trace without URL", []string{"x", "trace", "--from", "a/b"}, 2, "warrenctl: warrenctl x trace wants 1 argument(s): URL (got 0)"},
		{"bad URL scheme", []string{"x", "trace", "-f", "testdata/mesh", "--from", "frontend/fe-0", "ftp://web.shop/"}, 2,
			`warrenctl: URL "ftp://web.shop/": scheme "ftp": want http, https, grpc, h2c or tcp`},
		{"bad header", []string{"x", "trace", "-f", "testdata/mesh", "--from", "frontend/fe-0", "-H", "nocolon", "http://web.shop/"}, 2,
			`warrenctl: -H "nocolon": want 'Name: value'`},
		{"bad --for", []string{"waypoint", "generate", "--for", "everything"}, 2, `warrenctl: --for "everything": want service, workload, all or none`},
		{"bad waypoint name", []string{"waypoint", "generate", "Bad_Name"}, 2,
			`warrenctl: waypoint name "Bad_Name": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
		{"bad --fail-on", []string{"analyze", "-f", "testdata/mesh", "--fail-on", "never"}, 2, `warrenctl: --fail-on "never": want error, warning or none`},
		{"-A with -n", []string{"analyze", "-f", "testdata/mesh", "-A", "-n", "x"}, 2, "warrenctl: -A and -n cannot be combined"},
		{"bad --proxy", []string{"x", "translate", "-f", "testdata/mesh", "--proxy", "gateway/x"}, 2,
			`warrenctl: --proxy: "gateway/x": want ztunnel~NODE, waypoint~NS/GATEWAY~POD, ztunnel/NODE or waypoint/NS/GATEWAY`},
		{"no proxy matches", []string{"proxy-status", "node-z", "--istiod-addr", "ISTIOD"}, 1,
			"warrenctl: no connected proxy matches \"node-z\" (connected: waypoint~shop/waypoint~waypoint-5d8f7-x2x9q, ztunnel~node-a, ztunnel~node-b)"},
		{"waypoint delete needs names", []string{"waypoint", "delete"}, 2, "warrenctl: give waypoint names or --all (not both)"},
		{"describe too many args", []string{"x", "describe", "pod", "a", "b"}, 2, "warrenctl: warrenctl x describe pod wants 1 argument(s): NAME (got 2)"},
	}
	istiod := addrOf(fakeIstiod(t, "syncz.json"))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i, a := range c.args {
				if a == "ISTIOD" {
					c.args[i] = istiod
				}
			}
			out, errOut, code := cli(t, nil, c.args...)
			if code != c.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, c.code, errOut)
			}
			if errOut != c.line+"\n" {
				t.Errorf("stderr:\n got %q\nwant %q", errOut, c.line+"\n")
			}
			if c.name != "no kubeconfig (version)" && out != "" {
				t.Errorf("stdout not empty: %q", out)
			}
		})
	}
}

// TestHelpHasExamples: every command has Example text, and help exits 0.
func TestHelpHasExamples(t *testing.T) {
	root := newRoot(&env{stdout: os.Stdout, stderr: os.Stderr})
	var missing []string
	for _, c := range allCommands(root) {
		if c.Example == "" && c.Name() != "help" && c.Name() != "completion" && !strings.HasPrefix(c.CommandPath(), "warrenctl completion") {
			missing = append(missing, c.CommandPath())
		}
	}
	if len(missing) > 0 {
		t.Errorf("commands without Example: %s", strings.Join(missing, ", "))
	}
	out, errOut, code := cli(t, nil, "x", "trace", "--help")
	if code != 0 || errOut != "" || !strings.Contains(out, "Examples:") {
		t.Errorf("help: code %d stderr %q", code, errOut)
	}
}

func allCommands(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, s := range c.Commands() {
		out = append(out, allCommands(s)...)
	}
	return out
}
