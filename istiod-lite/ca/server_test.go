package ca_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/warren-mesh/warren/certs"
	cav1 "github.com/warren-mesh/warren/istiod-lite/api/ca/v1"
	"github.com/warren-mesh/warren/istiod-lite/ca"
	"github.com/warren-mesh/warren/istiod-lite/ca/client"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

const (
	ztunnelTokenA = "ztunnel-node-a-token-0123456789"
	ztunnelNoNode = "ztunnel-unbound-token-012345678"
	webToken      = "web-workload-token-0123456789ab"
)

func pod(ns, name, sa, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{ServiceAccountName: sa, NodeName: node},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
}

// syncBuffer is a concurrency-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	ca       *certs.CA
	addr     string
	serverID spiffeid.ID
	reg      *prometheus.Registry
	logs     *syncBuffer
}

func startCA(t testing.TB) *fixture {
	t.Helper()
	authority, err := certs.NewCA(certs.Options{TrustDomain: td, DataDir: t.TempDir(), MaxTTL: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := ca.NewStaticAuthenticator(td, []ca.BootstrapToken{
		{Token: ztunnelTokenA, ServiceAccount: "warren-system/ztunnel", Node: "node-a"},
		{Token: ztunnelNoNode, ServiceAccount: "warren-system/ztunnel"},
		{Token: webToken, ServiceAccount: "shop/web", Node: "node-a"},
	}, "test")
	if err != nil {
		t.Fatal(err)
	}
	pods := ca.NewStaticPodLocator(
		pod("shop", "web-1", "web", "node-a"),
		pod("shop", "db-1", "db", "node-b"),
		pod("shop", "api-1", "api", "node-a"),
		pod("shop", "api-2", "api", "node-b"),
	)
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	srv, err := ca.NewServer(ca.Options{
		CA: authority, Authenticator: auth, Pods: pods,
		Impersonators: []string{"warren-system/ztunnel"},
		Registerer:    reg,
		Logger:        slog.New(slog.NewJSONHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	serverID, _ := certs.WorkloadID(td, "warren-system", "istiod-lite")
	serving, err := ca.NewServingIdentity(authority, serverID, []string{"istiod-lite.warren-system.svc"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go serving.Run(ctx)
	<-serving.Ready()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis, ca.ServerTLSConfig(serving)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &fixture{ca: authority, addr: lis.Addr().String(), serverID: serverID, reg: reg, logs: logs}
}

func (f *fixture) client(t testing.TB, token string) *client.Client {
	t.Helper()
	c, err := client.New(client.Options{Address: f.addr, Roots: certs.NewTrustBundle(td, f.ca.Bundle().Roots()...), ServerID: f.serverID, Token: client.StaticToken(token)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (f *fixture) raw(t *testing.T) cav1.CertificateServiceClient {
	t.Helper()
	conf := client.TLSConfig(f.addr, certs.NewTrustBundle(td, f.ca.Bundle().Roots()...), f.serverID)
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return cav1.NewCertificateServiceClient(conn)
}

func id(t *testing.T, ns, sa string) spiffeid.ID {
	t.Helper()
	i, err := certs.WorkloadID(td, ns, sa)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestIssueOwnIdentityAndInspectWithOpenSSL(t *testing.T) {
	f := startCA(t)
	ctx := context.Background()
	res, err := f.client(t, webToken).Sign(ctx, spiffeid.ID{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.SVID.ID != id(t, "shop", "web") {
		t.Fatalf("issued %s", res.SVID.ID)
	}
	if len(res.Roots) != 1 {
		t.Fatalf("response carried %d roots", len(res.Roots))
	}
	leaf := res.SVID.Certificates[0]
	if _, _, err := certs.NewTrustBundle(td, res.Roots...).Verify(res.SVID.Certificates, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got < 24*time.Hour || got > 24*time.Hour+6*time.Minute {
		t.Fatalf("lifetime %s, want 24h (+ backdate)", got)
	}
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed (make deps installs it); the rest of this test passed")
	}
	path := t.TempDir() + "/leaf.pem"
	if err := os.WriteFile(path, certs.EncodeCertificates(res.SVID.Certificates[:1]), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "x509", "-in", path, "-noout", "-text").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	text := string(out)
	for _, want := range []string{
		"X509v3 Subject Alternative Name: critical",
		"URI:spiffe://cluster.local/ns/shop/sa/web",
		"ASN1 OID: prime256v1",
		"CA:FALSE",
		"Digital Signature",
		"TLS Web Server Authentication, TLS Web Client Authentication",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl output lacks %q:\n%s", want, text)
		}
	}
	for _, bad := range []string{"DNS:", "IP Address:", "email:"} {
		if strings.Contains(text, bad) {
			t.Errorf("openssl shows an extra SAN %q", bad)
		}
	}
}

func TestNodeScopedImpersonation(t *testing.T) {
	f := startCA(t)
	ctx := context.Background()
	zt := f.client(t, ztunnelTokenA)
	cases := []struct {
		name  string
		c     *client.Client
		want  spiffeid.ID
		code  codes.Code
		match string
	}{
		{"pod on own node", zt, id(t, "shop", "web"), codes.OK, ""},
		{"identity with pods on several nodes incl. own", zt, id(t, "shop", "api"), codes.OK, ""},
		{"pod on another node", zt, id(t, "shop", "db"), codes.PermissionDenied, `run on node-b, not on the caller's node "node-a"`},
		{"unknown pod", zt, id(t, "shop", "ghost"), codes.PermissionDenied, "no running pod has identity spiffe://cluster.local/ns/shop/sa/ghost"},
		{"token not bound to a node", f.client(t, ztunnelNoNode), id(t, "shop", "web"), codes.PermissionDenied, "not bound to a node"},
		{"workload asks for another namespace's identity", f.client(t, webToken), id(t, "other", "web"), codes.PermissionDenied, "may only request its own identity"},
		{"workload asks for a neighbour's identity", f.client(t, webToken), id(t, "shop", "api"), codes.PermissionDenied, "may only request its own identity"},
		{"workload asks for its own identity explicitly", f.client(t, webToken), id(t, "shop", "web"), codes.OK, ""},
		{"foreign trust domain", zt, spiffeid.RequireFromString("spiffe://evil.example/ns/shop/sa/web"), codes.InvalidArgument, "outside trust domain"},
		{"bad token", f.client(t, "nope-nope-nope-nope-nope"), id(t, "shop", "web"), codes.Unauthenticated, "unknown bootstrap token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := tc.c.Sign(ctx, tc.want, time.Hour)
			if tc.code == codes.OK {
				if err != nil {
					t.Fatal(err)
				}
				if res.SVID.ID != tc.want {
					t.Fatalf("got %s", res.SVID.ID)
				}
				return
			}
			if err == nil {
				t.Fatalf("issued %s; want %s", res.SVID.ID, tc.code)
			}
			st, _ := status.FromError(unwrapStatus(err))
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.match) {
				t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), tc.code, tc.match)
			}
		})
	}
	if n := metricValue(t, f.reg, "warren_ca_failures_total", "permission_denied"); n != 5 {
		t.Errorf("permission_denied failures = %v, want 5", n)
	}
	if !strings.Contains(f.logs.String(), `"caller_node":"node-a"`) || !strings.Contains(f.logs.String(), `"reason":"permission_denied"`) {
		t.Errorf("refusals not logged with caller and reason:\n%s", f.logs.String())
	}
}

func TestBadRequestsNeverYieldACertificate(t *testing.T) {
	f := startCA(t)
	raw := f.raw(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	web := id(t, "shop", "web")
	csrPEM := func(tmpl x509.CertificateRequest) string {
		der, err := x509.CreateCertificateRequest(rand.Reader, &tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	}
	good := csrPEM(x509.CertificateRequest{URIs: []*url.URL{web.URL()}})
	block, _ := pem.Decode([]byte(good))
	tampered := append([]byte(nil), block.Bytes...)
	tampered[len(tampered)-3] ^= 0x55
	badSig := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}))
	cases := []struct {
		name  string
		token string
		req   *cav1.CreateCertificateRequest
		code  codes.Code
		match string
	}{
		{"no token", "", &cav1.CreateCertificateRequest{CsrPem: good}, codes.Unauthenticated, "no bearer token"},
		{"empty CSR", webToken, &cav1.CreateCertificateRequest{}, codes.InvalidArgument, "exactly one PEM block"},
		{"not PEM", webToken, &cav1.CreateCertificateRequest{CsrPem: "hello"}, codes.InvalidArgument, "exactly one PEM block"},
		{"wrong PEM type", webToken, &cav1.CreateCertificateRequest{CsrPem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}))}, codes.InvalidArgument, "exactly one PEM block"},
		{"two PEM blocks", webToken, &cav1.CreateCertificateRequest{CsrPem: good + good}, codes.InvalidArgument, "exactly one PEM block"},
		{"garbage DER", webToken, &cav1.CreateCertificateRequest{CsrPem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1, 2, 3}}))}, codes.InvalidArgument, "csr:"},
		{"bad signature", webToken, &cav1.CreateCertificateRequest{CsrPem: badSig}, codes.InvalidArgument, "csr signature"},
		{"DNS SAN", webToken, &cav1.CreateCertificateRequest{CsrPem: csrPEM(x509.CertificateRequest{DNSNames: []string{"x.example"}})}, codes.InvalidArgument, "DNS SANs"},
		{"IP SAN", webToken, &cav1.CreateCertificateRequest{CsrPem: csrPEM(x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(1, 2, 3, 4)}})}, codes.InvalidArgument, "IP SANs"},
		{"TTL above max", webToken, &cav1.CreateCertificateRequest{CsrPem: good, ValiditySeconds: 49 * 3600}, codes.InvalidArgument, "validity_seconds"},
		{"negative TTL", webToken, &cav1.CreateCertificateRequest{CsrPem: good, ValiditySeconds: -1}, codes.InvalidArgument, "validity_seconds"},
		{"malformed identity", webToken, &cav1.CreateCertificateRequest{CsrPem: good, ImpersonatedIdentity: "http://x"}, codes.InvalidArgument, "impersonated_identity"},
		{"oversized CSR", webToken, &cav1.CreateCertificateRequest{CsrPem: strings.Repeat("A", 20<<10)}, codes.InvalidArgument, "exceeds the"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.token != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tc.token)
			}
			resp, err := raw.CreateCertificate(ctx, tc.req)
			if err == nil {
				t.Fatalf("issued %d certs; want %v", len(resp.GetCertChainPem()), tc.code)
			}
			st, _ := status.FromError(err)
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.match) {
				t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), tc.code, tc.match)
			}
		})
	}
	if n := metricValue(t, f.reg, "citadel_server_success_cert_issuance_count", ""); n != 0 {
		t.Fatalf("issued %v certificates from bad requests", n)
	}
	if n := metricValue(t, f.reg, "warren_ca_failures_total", "invalid_request"); n != 12 {
		t.Fatalf("invalid_request failures = %v, want 12", n)
	}
}

func TestServerIdentityIsChecked(t *testing.T) {
	f := startCA(t)
	wrong, _ := certs.WorkloadID(td, "warren-system", "impostor")
	c, err := client.New(client.Options{Address: f.addr, Roots: f.ca.Bundle(), ServerID: wrong, Token: client.StaticToken(webToken)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Sign(ctx, spiffeid.ID{}, 0)
	if err == nil || !strings.Contains(err.Error(), "want spiffe://cluster.local/ns/warren-system/sa/impostor") {
		t.Fatalf("client accepted a server with the wrong identity: %v", err)
	}
}

func TestRootExpiryMetrics(t *testing.T) {
	f := startCA(t)
	got := metricValue(t, f.reg, "citadel_server_root_cert_expiry_timestamp", "")
	if want := float64(f.ca.Signer().Root.NotAfter.Unix()); got != want {
		t.Fatalf("root expiry metric %v, want %v", got, want)
	}
}

// metricValue reads a counter or gauge (with the given reason label value
// if non-empty) from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := reason == ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					match = true
				}
			}
			if match {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{reason=%q} not found", name, reason)
	return 0
}

// unwrapStatus finds the gRPC status inside a wrapped client error.
func unwrapStatus(err error) error {
	type grpcStatus interface{ GRPCStatus() *status.Status }
	for e := err; e != nil; {
		if _, ok := e.(grpcStatus); ok {
			return e
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	return err
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}
