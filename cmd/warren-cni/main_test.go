package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/warren-mesh/warren/redirect/cni"
)

// The plugin binary, run the way a container runtime runs it (CNI_*
// environment, config on stdin), against a fake agent socket.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func plugin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "warren-cni-test")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "warren-cni")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build: %v\n%s", buildErr, binPath)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

type agent struct {
	mu   sync.Mutex
	adds []cni.PodRequest
}

func (a *agent) CNIAdd(_ context.Context, r cni.PodRequest) (cni.PodResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.adds = append(a.adds, r)
	return cni.PodResponse{Enrolled: true}, nil
}
func (a *agent) CNIDel(context.Context, cni.PodRequest) error { return nil }
func (a *agent) CNICheck(context.Context, cni.PodRequest) (cni.PodResponse, error) {
	return cni.PodResponse{Enrolled: true}, nil
}

func run(t *testing.T, command, socket string) (stdout string, err error) {
	t.Helper()
	conf := `{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"warren-cni","agentSocket":"` + socket + `",` +
		`"prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.244.0.9/24"}]}}`
	cmd := exec.Command(plugin(t))
	cmd.Stdin = strings.NewReader(conf)
	cmd.Env = []string{
		"CNI_COMMAND=" + command, "CNI_CONTAINERID=abc123", "CNI_NETNS=/var/run/netns/cni-9", "CNI_IFNAME=eth0",
		"CNI_PATH=/usr/lib/cni", "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_UID=8d1c0a52-6d0e-4b55-8a43-9f4c5d3e2b10",
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	err = cmd.Run()
	return out.String(), err
}

func TestPluginAdd(t *testing.T) {
	a := &agent{}
	sock := filepath.Join(t.TempDir(), "cni.sock")
	s, err := cni.Listen(sock, a)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	defer s.Close()
	out, err := run(t, "ADD", sock)
	if err != nil {
		t.Fatalf("ADD: %v: %s", err, out)
	}
	var res struct {
		IPs []struct{ Address string } `json:"ips"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) != 1 || res.IPs[0].Address != "10.244.0.9/24" {
		t.Errorf("ADD printed %q, want the prevResult", out)
	}
	if len(a.adds) != 1 || a.adds[0].Name != "web-0" || a.adds[0].Netns != "/var/run/netns/cni-9" || a.adds[0].UID == "" {
		t.Errorf("agent saw %+v", a.adds)
	}
	if out, err := run(t, "DEL", sock); err != nil {
		t.Errorf("DEL: %v: %s", err, out)
	}
}

func TestPluginAddWithoutAgentFails(t *testing.T) {
	out, err := run(t, "ADD", filepath.Join(t.TempDir(), "absent.sock"))
	if err == nil {
		t.Fatalf("ADD without an agent succeeded: %s", out)
	}
	var e struct {
		Code uint   `json:"code"`
		Msg  string `json:"msg"`
	}
	if jerr := json.Unmarshal([]byte(out), &e); jerr != nil || e.Code != 11 || !strings.Contains(e.Msg, "node agent is unreachable") {
		t.Errorf("error output %q, want CNI error 11 naming the unreachable agent", out)
	}
	// DEL still succeeds, so the runtime can tear the sandbox down.
	if out, err := run(t, "DEL", filepath.Join(t.TempDir(), "absent.sock")); err != nil {
		t.Errorf("DEL without an agent: %v: %s", err, out)
	}
}

func TestPluginVersion(t *testing.T) {
	out, err := run(t, "VERSION", "")
	if err != nil || !strings.Contains(out, `"1.0.0"`) {
		t.Errorf("VERSION: %v %s", err, out)
	}
}
