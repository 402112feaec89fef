package cni

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// fakeService is the agent side, behind a real socket.
type fakeService struct {
	mu      sync.Mutex
	adds    []PodRequest
	dels    []PodRequest
	enrol   bool
	failAdd error
}

func (f *fakeService) CNIAdd(ctx context.Context, r PodRequest) (PodResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adds = append(f.adds, r)
	if f.failAdd != nil {
		return PodResponse{}, f.failAdd
	}
	return PodResponse{Enrolled: f.enrol}, nil
}

func (f *fakeService) CNIDel(ctx context.Context, r PodRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dels = append(f.dels, r)
	return nil
}

func (f *fakeService) CNICheck(ctx context.Context, r PodRequest) (PodResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.enrol {
		return PodResponse{}, errors.New("should be captured and is not")
	}
	return PodResponse{Enrolled: true}, nil
}

func serveFake(t *testing.T, svc Service) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cni.sock")
	s, err := Listen(path, svc)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return path
}

const prevResult = `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/cni-1"}],"ips":[{"address":"10.244.1.7/24","interface":0},{"address":"fd00::7/64","interface":0}]}`

func conf(socket string, extra string) []byte {
	return []byte(`{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"warren-cni","agentSocket":"` + socket + `"` + extra + `,"prevResult":` + prevResult + `}`)
}

func args(stdin []byte) *skel.CmdArgs {
	return &skel.CmdArgs{
		ContainerID: "c0ffee",
		Netns:       "/var/run/netns/cni-1",
		IfName:      "eth0",
		Args:        "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-0;K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=3b1e6b8e-0b1f-4c4e-9d55-5b8a2f3c1d20",
		StdinData:   stdin,
	}
}

func capturePrint(out *types.Result) func(types.Result, string) error {
	return func(r types.Result, _ string) error { *out = r; return nil }
}

func TestAddEnrolsAndPassesPrevResult(t *testing.T) {
	svc := &fakeService{enrol: true}
	sock := serveFake(t, svc)
	var printed types.Result
	p := &Plugin{Print: capturePrint(&printed)}
	if err := p.Add(args(conf(sock, ""))); err != nil {
		t.Fatal(err)
	}
	if len(svc.adds) != 1 {
		t.Fatalf("agent saw %d adds", len(svc.adds))
	}
	got := svc.adds[0]
	want := PodRequest{Namespace: "shop", Name: "cart-0", UID: "3b1e6b8e-0b1f-4c4e-9d55-5b8a2f3c1d20", ContainerID: "c0ffee",
		Netns: "/var/run/netns/cni-1", IfName: "eth0", IPs: []string{"10.244.1.7", "fd00::7"}}
	if b, w := mustJSON(got), mustJSON(want); b != w {
		t.Errorf("request %s, want %s", b, w)
	}
	res, err := current.GetResult(printed)
	if err != nil || len(res.IPs) != 2 || res.IPs[0].Address.String() != "10.244.1.7/24" {
		t.Errorf("prevResult not passed through: %v %v", printed, err)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestAddFailsClosedWhenAgentUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "nobody-home.sock")
	p := &Plugin{Print: capturePrint(new(types.Result))}
	err := p.Add(args(conf(sock, "")))
	var te *types.Error
	if !errors.As(err, &te) || te.Code != types.ErrTryAgainLater {
		t.Fatalf("Add with no agent = %v, want a CNI error code %d", err, types.ErrTryAgainLater)
	}
	for _, want := range []string{"shop/cart-0", "node agent is unreachable", "failOpen"} {
		if !strings.Contains(te.Msg, want) {
			t.Errorf("message %q lacks %q", te.Msg, want)
		}
	}
}

func TestAddFailOpen(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "nobody-home.sock")
	var printed types.Result
	p := &Plugin{Print: capturePrint(&printed)}
	if err := p.Add(args(conf(sock, `,"failOpen":true`))); err != nil {
		t.Fatalf("failOpen Add: %v", err)
	}
	if printed == nil {
		t.Fatal("no result printed")
	}
}

func TestAddFailsWhenAgentCannotCapture(t *testing.T) {
	// failOpen covers an absent agent only: an agent that says the pod
	// must be captured and could not be never lets it start.
	svc := &fakeService{failAdd: errors.New("ztunnel not connected")}
	sock := serveFake(t, svc)
	p := &Plugin{Print: capturePrint(new(types.Result))}
	err := p.Add(args(conf(sock, `,"failOpen":true`)))
	if err == nil || !strings.Contains(err.Error(), "ztunnel not connected") {
		t.Fatalf("Add = %v, want the agent's reason", err)
	}
}

func TestAddNeedsPrevResultAndPassesNonKubernetes(t *testing.T) {
	svc := &fakeService{enrol: true}
	sock := serveFake(t, svc)
	p := &Plugin{Print: capturePrint(new(types.Result))}
	noPrev := []byte(`{"cniVersion":"1.0.0","name":"n","type":"warren-cni","agentSocket":"` + sock + `"}`)
	if err := p.Add(args(noPrev)); err == nil {
		t.Error("Add without prevResult succeeded")
	}
	a := args(conf(sock, ""))
	a.Args = ""
	if err := p.Add(a); err != nil {
		t.Errorf("non-Kubernetes Add: %v", err)
	}
	if len(svc.adds) != 0 {
		t.Errorf("agent asked about a non-Kubernetes sandbox: %v", svc.adds)
	}
}

func TestDelNeverBlocksTeardown(t *testing.T) {
	svc := &fakeService{}
	sock := serveFake(t, svc)
	p := &Plugin{}
	if err := p.Del(args(conf(sock, ""))); err != nil {
		t.Fatal(err)
	}
	if len(svc.dels) != 1 || svc.dels[0].Netns != "/var/run/netns/cni-1" {
		t.Errorf("dels %v", svc.dels)
	}
	gone := filepath.Join(t.TempDir(), "gone.sock")
	if err := p.Del(args(conf(gone, ""))); err != nil {
		t.Errorf("Del with the agent away: %v", err)
	}
}

func TestCheckAndStatus(t *testing.T) {
	svc := &fakeService{enrol: true}
	sock := serveFake(t, svc)
	p := &Plugin{}
	if err := p.Check(args(conf(sock, ""))); err != nil {
		t.Errorf("Check: %v", err)
	}
	svc.mu.Lock()
	svc.enrol = false
	svc.mu.Unlock()
	if err := p.Check(args(conf(sock, ""))); err == nil {
		t.Error("Check passed for a pod that is not captured")
	}
	if err := p.Status(args(conf(sock, ""))); err != nil {
		t.Errorf("Status: %v", err)
	}
	gone := filepath.Join(t.TempDir(), "gone.sock")
	if err := p.Status(args(conf(gone, ""))); err == nil {
		t.Error("Status passed without an agent")
	}
	if err := p.Status(args(conf(gone, `,"failOpen":true`))); err != nil {
		t.Errorf("failOpen Status: %v", err)
	}
}

func TestParseConfig(t *testing.T) {
	c, d, err := ParseConfig([]byte(`{"cniVersion":"1.0.0","name":"n","type":"warren-cni","timeout":"250ms"}`))
	if err != nil || c.AgentSocket != DefaultSocket || d != 250*time.Millisecond || c.FailOpen {
		t.Errorf("ParseConfig = %+v, %v, %v", c, d, err)
	}
	if _, _, err := ParseConfig([]byte(`{"timeout":"soon"}`)); err == nil {
		t.Error("bad timeout accepted")
	}
	if _, _, err := ParseConfig([]byte(`{`)); err == nil {
		t.Error("bad JSON accepted")
	}
}

func TestServerRejectsBadRequests(t *testing.T) {
	svc := &fakeService{enrol: true}
	sock := serveFake(t, svc)
	c := NewClient(sock, time.Second)
	if _, err := c.Add(context.Background(), PodRequest{Namespace: "a"}); err == nil || errors.Is(err, ErrUnreachable) {
		t.Errorf("invalid request: %v", err)
	}
	if err := c.Ready(context.Background()); err != nil {
		t.Errorf("Ready: %v", err)
	}
}
