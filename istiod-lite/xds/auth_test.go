package xds

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/warren-mesh/warren/certs"
	cav1 "github.com/warren-mesh/warren/istiod-lite/api/ca/v1"
	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/ca"
	caclient "github.com/warren-mesh/warren/istiod-lite/ca/client"
	"github.com/warren-mesh/warren/istiod-lite/xds/client"
)

func TestStreamAuthentication(t *testing.T) {
	reg := prometheus.NewRegistry()
	auth := fakeAuth{
		"zt-a":         caller("warren-system", "ztunnel", "node-a"),
		"zt-unbound":   caller("warren-system", "ztunnel", ""),
		"intruder":     caller("default", "app", "node-a"),
		"waypoint-wp1": caller("shop", "wp1", ""),
		"other-ns-wp1": caller("other", "wp1", ""),
	}
	s := startServer(t, Options{Authenticator: auth, Debounce: NoDebounce, Registerer: reg})
	if err := s.Set(TypeWorkload, workloads("a")); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		token, node string
		code        codes.Code
		msg         string
	}{
		"no token":             {"", zt, codes.Unauthenticated, "no bearer token"},
		"unknown token":        {"garbage", zt, codes.Unauthenticated, "unknown token"},
		"wrong node":           {"zt-a", "ztunnel~node-b", codes.PermissionDenied, `bound to node "node-a", not "node-b"`},
		"unbound token":        {"zt-unbound", zt, codes.PermissionDenied, "not bound to a node"},
		"wrong service acct":   {"intruder", zt, codes.PermissionDenied, "default/app may not act as a ztunnel"},
		"app as waypoint":      {"intruder", "waypoint~default/wp1~wp1-0", codes.PermissionDenied, "may not act as waypoint default/wp1"},
		"waypoint other ns":    {"other-ns-wp1", "waypoint~shop/wp1~wp1-0", codes.PermissionDenied, "may not act as waypoint shop/wp1"},
		"waypoint as ztunnel":  {"waypoint-wp1", zt, codes.PermissionDenied, "may not act as a ztunnel"},
		"malformed node id":    {"zt-a", "ztunnel:node-a", codes.InvalidArgument, "node id"},
		"missing node id":      {"zt-a", "", codes.InvalidArgument, "must carry node.id"},
		"bad node name":        {"zt-a", "ztunnel~Node_A", codes.InvalidArgument, "not allowed"},
		"ztunnel own node":     {"zt-a", zt, codes.OK, ""},
		"waypoint of its own":  {"waypoint-wp1", "waypoint~shop/wp1~wp1-7f9c", codes.OK, ""},
		"same token, same pod": {"waypoint-wp1", "waypoint~shop/wp1~wp1-other", codes.OK, ""},
	} {
		t.Run(name, func(t *testing.T) {
			r := dialRaw(t, s.addr, tc.token)
			r.subscribe(tc.node, TypeWorkload, nil, nil)
			if tc.code == codes.OK {
				if resp := r.recv(); resp.TypeUrl != TypeWorkload {
					t.Fatalf("got %s", resp.TypeUrl)
				}
				return
			}
			err := r.streamErr()
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "xds: ") {
				t.Fatalf("got %v, want %s containing %q", err, tc.code, tc.msg)
			}
		})
	}
	if v := metricValue(t, reg, "warren_xds_refused_streams_total", "reason", "permission_denied"); v != 6 {
		t.Errorf("permission_denied refusals: %v, want 6", v)
	}
	if v := metricValue(t, reg, "warren_xds_refused_streams_total", "reason", "unauthenticated"); v != 2 {
		t.Errorf("unauthenticated refusals: %v, want 2", v)
	}

	// A stream may not change its node id later.
	r := dialRaw(t, s.addr, "zt-a")
	r.subscribe(zt, TypeWorkload, nil, nil)
	r.recv()
	r.send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "ztunnel~node-b"}, TypeUrl: TypeService})
	if err := r.streamErr(); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "switched node id") {
		t.Fatalf("node id switch: %v", err)
	}
}

func TestCustomAuthorizer(t *testing.T) {
	auth := fakeAuth{"t": caller("warren-system", "node-agent", "node-a")}
	s := startServer(t, Options{
		Authenticator: auth,
		NodeProxies:   []string{"warren-system/node-agent"},
	})
	r := dialRaw(t, s.addr, "t")
	r.subscribe(zt, TypeWorkload, nil, nil)
	r.recv()

	if _, err := NewServer(Options{Authenticator: auth, NodeProxies: []string{"ztunnel"}}); err == nil {
		t.Error("a node proxy without a namespace was accepted")
	}
	if _, err := NewServer(Options{}); err == nil || !strings.Contains(err.Error(), "authenticator") {
		t.Errorf("no authenticator: %v", err)
	}
	deny := startServer(t, Options{Authenticator: auth, Authorize: func(c *ca.Caller, n NodeID) error {
		return errTest("maintenance window")
	}})
	r = dialRaw(t, deny.addr, "t")
	r.subscribe(zt, TypeWorkload, nil, nil)
	if err := r.streamErr(); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "maintenance window") {
		t.Fatalf("custom authorizer: %v", err)
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

// TestTLSPortSharedWithCA hosts the certificate service and xDS on one TLS
// gRPC server, as port 15012 does, with the real bootstrap-token
// authenticator and the CA client's TLS configuration.
func TestTLSPortSharedWithCA(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("cluster.local")
	authority, err := certs.NewCA(certs.Options{TrustDomain: td, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := ca.NewStaticAuthenticator(td, []ca.BootstrapToken{
		{Token: "ztunnel-node-a-token", ServiceAccount: "warren-system/ztunnel", Node: "node-a"},
	}, "test")
	if err != nil {
		t.Fatal(err)
	}
	caSrv, err := ca.NewServer(ca.Options{CA: authority, Authenticator: auth})
	if err != nil {
		t.Fatal(err)
	}
	serverID := spiffeid.RequireFromPath(td, "/ns/warren-system/sa/istiod-lite")
	serving, err := ca.NewServingIdentity(authority, serverID, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go serving.Run(ctx)
	select {
	case <-serving.Ready():
	case <-time.After(timeout):
		t.Fatal("no serving certificate")
	}
	x, err := NewServer(Options{Authenticator: auth, Debounce: NoDebounce})
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(ca.ServerTLSConfig(serving))))
	cav1.RegisterCertificateServiceServer(gs, caSrv)
	x.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()

	bundle := &warrenv1.TrustBundle{TrustDomain: "cluster.local", RootsPem: []string{string(authority.Bundle().PEM())}}
	if err := x.Update(TypeTrustBundle, map[string]proto.Message{TrustBundleName: bundle}, nil); err != nil {
		t.Fatal(err)
	}
	tlsConf := caclient.TLSConfig(lis.Addr().String(), certs.NewTrustBundle(td, authority.Bundle().Roots()...), serverID)
	rec := newRecorder()
	c := runClient(t, client.Options{
		Address: lis.Addr().String(), NodeID: zt, Types: []string{TypeTrustBundle},
		TLS: tlsConf, Token: client.StaticToken("ztunnel-node-a-token"), Handler: rec,
	})
	waitSynced(t, c)
	if got := rec.get(TypeTrustBundle, TrustBundleName); !proto.Equal(got, bundle) {
		t.Fatalf("trust bundle over TLS: %v", got)
	}
	ps := x.Proxies()
	if len(ps) != 1 || ps[0].Caller.ID.String() != "spiffe://cluster.local/ns/warren-system/sa/ztunnel" || ps[0].Caller.Node != "node-a" {
		t.Fatalf("proxies: %+v", ps)
	}
	// The same port still serves certificates.
	cc, err := caclient.New(caclient.Options{Address: lis.Addr().String(), Roots: certs.NewTrustBundle(td, authority.Bundle().Roots()...), ServerID: serverID, Token: caclient.StaticToken("ztunnel-node-a-token")})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := cc.Sign(ctx, spiffeid.ID{}, 0); err != nil {
		t.Fatalf("CA on the shared port: %v", err)
	}
}

func metricValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}
