package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "warren-node-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func TestValidate(t *testing.T) {
	o := options{}
	if err := o.validate(); err == nil {
		t.Error("no node name accepted")
	}
	o = options{nodeName: "n1"}
	if err := o.validate(); err != nil || o.pinPath != "/sys/fs/bpf/warren/n1" {
		t.Errorf("validate: %v, pin path %q", err, o.pinPath)
	}
	if _, err := parseAddrs("10.0.0.1, fd00::1,,"); err != nil {
		t.Error(err)
	}
	if _, err := parseAddrs("10.0.0.300"); err == nil {
		t.Error("bad address accepted")
	}
}

// TestRefusesWithoutCapabilities: without CAP_BPF the agent exits with a
// message naming what is missing instead of running without capture.
func TestRefusesWithoutCapabilities(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop capabilities with setpriv")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not found")
	}
	bin := build(t)
	cmd := exec.Command("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--", bin,
		"-node-name", "n1", "-cgroup", "/", "-pin-path", "/sys/fs/bpf/warren-test-nocaps", "-debug-addr", "")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("agent started without capabilities:\n%s", out)
	}
	for _, want := range []string{"refusing to start", "not supported", "CAP_BPF"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
