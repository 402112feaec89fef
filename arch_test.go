package warren

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/warren-mesh/warren"

// TestDependencyDirection enforces the dependency rule of
// docs/architecture.md by walking `go list -deps` of every package.
func TestDependencyDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	type pkg struct {
		ImportPath string
		Deps       []string
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	for _, p := range pkgs {
		for _, d := range p.Deps {
			if msg := violates(p.ImportPath, d); msg != "" {
				t.Errorf("%s imports %s: %s", rel(p.ImportPath), rel(d), msg)
			}
		}
	}
}

func rel(p string) string { return strings.TrimPrefix(strings.TrimPrefix(p, module), "/") }

func under(p, dir string) bool {
	r := rel(p)
	return r == dir || strings.HasPrefix(r, dir+"/")
}

// dataPlaneMayUse are the istiod-lite packages the data plane may import:
// wire types and client libraries.
var dataPlaneMayUse = []string{"istiod-lite/api", "istiod-lite/ca/client", "istiod-lite/xds/client"}

// violates returns why from → to breaks the rule, or "".
func violates(from, to string) string {
	if !strings.HasPrefix(to, module) || from == to {
		return ""
	}
	switch {
	case under(to, "cmd"):
		return "nothing imports cmd"
	case under(to, "e2e") && !under(from, "e2e"):
		return "nothing outside e2e imports e2e"
	case under(from, "istiod-lite") && (under(to, "ztunnel") || under(to, "waypoint") || under(to, "redirect")):
		return "the control plane never imports the data plane"
	case under(from, "certs") && !under(to, "certs"):
		return "certs is a leaf library"
	}
	if under(from, "ztunnel") || under(from, "waypoint") || under(from, "redirect") {
		if under(to, "istiod-lite") {
			for _, ok := range dataPlaneMayUse {
				if under(to, ok) {
					return ""
				}
			}
			return "the data plane imports only istiod-lite/api and the client packages"
		}
		if under(from, "ztunnel") && under(to, "waypoint") {
			return "ztunnel never imports the waypoint"
		}
		if under(from, "waypoint") && under(to, "ztunnel") && !under(to, "ztunnel/hbone") {
			return "the waypoint shares only ztunnel/hbone"
		}
	}
	if under(from, "istiod-lite/ca/client") && under(to, "istiod-lite") && !under(to, "istiod-lite/api") {
		return "client packages import only istiod-lite/api"
	}
	return ""
}

func TestDependencyRuleCatchesViolations(t *testing.T) {
	bad := [][2]string{
		{"istiod-lite/ca", "ztunnel/hbone"},
		{"ztunnel/outbound", "istiod-lite/model"},
		{"waypoint/router", "ztunnel/inbound"},
		{"certs", "istiod-lite/api/ca/v1"},
		{"istiod-lite/ca/client", "istiod-lite/ca"},
		{"ztunnel", "cmd/istiod-lite"},
	}
	for _, b := range bad {
		if violates(module+"/"+b[0], module+"/"+b[1]) == "" {
			t.Errorf("%s → %s not flagged", b[0], b[1])
		}
	}
	good := [][2]string{
		{"ztunnel", "istiod-lite/api/ca/v1"},
		{"ztunnel", "istiod-lite/ca/client"},
		{"waypoint/router", "ztunnel/hbone"},
		{"cmd/istiod-lite", "istiod-lite/ca"},
		{"istiod-lite/ca", "certs"},
	}
	for _, g := range good {
		if msg := violates(module+"/"+g[0], module+"/"+g[1]); msg != "" {
			t.Errorf("%s → %s flagged: %s", g[0], g[1], msg)
		}
	}
}
