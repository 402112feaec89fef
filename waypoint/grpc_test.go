package waypoint

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// startGRPC runs a gRPC health server on loopback reporting st for "".
func startGRPC(t *testing.T, name string, st healthpb.HealthCheckResponse_ServingStatus) pod {
	t.Helper()
	ip := loopbackIP()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", st)
	healthpb.RegisterHealthServer(s, hs)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(s.Stop)
	return pod{name: name, ip: ip, port: ln.Addr().(*net.TCPAddr).Port, portName: "grpc"}
}

func TestGRPCRouting(t *testing.T) {
	pa := startGRPC(t, "grpc-a", healthpb.HealthCheckResponse_SERVING)
	pa.app = "grpc"
	pb := startGRPC(t, "grpc-b", healthpb.HealthCheckResponse_NOT_SERVING)
	pb.app = "grpc-b"
	extra := `apiVersion: v1
kind: Service
metadata: {name: grpc-b, namespace: shop}
spec:
  clusterIP: 10.96.0.23
  ports: [{name: grpc, port: 7070, targetPort: grpc, appProtocol: grpc}]
  selector: {app: grpc-b}
---
apiVersion: v1
kind: Service
metadata: {name: grpc-empty, namespace: shop}
spec:
  clusterIP: 10.96.0.24
  ports: [{name: grpc, port: 7070, targetPort: grpc, appProtocol: grpc}]
  selector: {app: nothing}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc, namespace: shop, generation: 1}
spec:
  parentRefs: [{group: "", kind: Service, name: grpc}]
  rules:
  - matches: [{method: {service: grpc.health.v1.Health, method: Check}, headers: [{name: x-backend, value: b}]}]
    backendRefs: [{name: grpc-b, port: 7070}]
  - matches: [{method: {service: grpc.health.v1.Health, method: Check}, headers: [{name: x-backend, value: empty}]}]
    backendRefs: [{name: grpc-empty, port: 7070}]
  - matches: [{method: {service: grpc.health.v1.Health}}]
    backendRefs: [{name: grpc, port: 7070}]
`
	h := newHarness(t, mesh([]pod{pa, pb}, extra), harnessOpts{})
	addr := h.listen(Destination{Service: grpcKey, Port: 7070, SourceNamespace: "client"})
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	call := func(md ...string) (*healthpb.HealthCheckResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return hc.Check(metadata.AppendToOutgoingContext(ctx, md...), &healthpb.HealthCheckRequest{})
	}
	if r, err := call(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("service match → grpc-a: %v %v", r, err)
	}
	if r, err := call("x-backend", "b"); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("method+header match → grpc-b: %v %v", r, err)
	}
	// No endpoints: UNAVAILABLE as a gRPC status, not an HTTP code.
	if _, err := call("x-backend", "empty"); status.Code(err) != codes.Unavailable {
		t.Fatalf("no endpoints: %v", err)
	}
	// No route: UNIMPLEMENTED.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = cc.Invoke(ctx, "/foo.Bar/Baz", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	if status.Code(err) != codes.Unimplemented || !strings.Contains(status.Convert(err).Message(), "no route") {
		t.Fatalf("no route: %v", err)
	}
	// Streaming works through the waypoint.
	wc, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := wc.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", r, err)
	}
	if got := h.counter(metricRequests, map[string]string{"request_protocol": "grpc", "response_code": "200", "grpc_response_status": "12"}); got != 1 {
		t.Errorf("UNIMPLEMENTED counted %v", got)
	}
	if !containsLine(h.log.String(), `"grpc_status":"14"`) {
		t.Errorf("access log lacks grpc_status 14: %s", h.log.String())
	}
}

func TestGRPCDeniedIsPermissionDenied(t *testing.T) {
	pa := startGRPC(t, "grpc-a", healthpb.HealthCheckResponse_SERVING)
	pa.app = "grpc"
	policy := `apiVersion: security.warren.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-health, namespace: shop, generation: 1}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: waypoint}]
  action: DENY
  rules: [{to: {paths: ["/grpc.health.v1.Health/*"]}}]
`
	h := newHarness(t, mesh([]pod{pa}, policy), harnessOpts{})
	addr := h.listen(Destination{Service: grpcKey, Port: 7070})
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("denied gRPC call: %v", err)
	}
}
