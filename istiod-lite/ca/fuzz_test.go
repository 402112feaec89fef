package ca_test

import (
	"context"
	"encoding/pem"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/warren-mesh/warren/certs"
	cav1 "github.com/warren-mesh/warren/istiod-lite/api/ca/v1"
	"github.com/warren-mesh/warren/istiod-lite/ca"
)

// FuzzCreateCertificate drives the service handler with arbitrary request
// fields and tokens. It must never panic, must answer every refusal with
// InvalidArgument, PermissionDenied or Unauthenticated, and anything it
// issues must be for the caller's own identity or a pod on its node.
func FuzzCreateCertificate(f *testing.F) {
	authority, err := certs.NewCA(certs.Options{TrustDomain: td, DataDir: f.TempDir(), MaxTTL: 48 * time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	auth, _ := ca.NewStaticAuthenticator(td, []ca.BootstrapToken{
		{Token: ztunnelTokenA, ServiceAccount: "warren-system/ztunnel", Node: "node-a"},
		{Token: webToken, ServiceAccount: "shop/web"},
	}, "fuzz")
	srv, err := ca.NewServer(ca.Options{
		CA: authority, Authenticator: auth, Impersonators: []string{"warren-system/ztunnel"},
		Pods: ca.NewStaticPodLocator(pod("shop", "web-1", "web", "node-a"), pod("shop", "db-1", "db", "node-b")),
	})
	if err != nil {
		f.Fatal(err)
	}
	key, _ := certs.GenerateKey()
	webID := spiffeid.RequireFromString("spiffe://cluster.local/ns/shop/sa/web")
	der, _ := certs.CreateCSR(key, webID)
	good := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	f.Add(good, int64(3600), "", webToken)
	f.Add(good, int64(0), webID.String(), ztunnelTokenA)
	f.Add(good, int64(0), "spiffe://cluster.local/ns/shop/sa/db", ztunnelTokenA)
	f.Add("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n", int64(-1), "spiffe://x/y", "")
	allowed := map[string]bool{webID.String(): true, "spiffe://cluster.local/ns/warren-system/sa/ztunnel": true}
	f.Fuzz(func(t *testing.T, csrPEM string, validity int64, identity, token string) {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
		resp, err := srv.CreateCertificate(ctx, &cav1.CreateCertificateRequest{CsrPem: csrPEM, ValiditySeconds: validity, ImpersonatedIdentity: identity})
		if err != nil {
			switch status.Code(err) {
			case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated:
				return
			default:
				t.Fatalf("unexpected code: %v", err)
			}
		}
		chain, err := certs.ParseCertificates([]byte(resp.CertChainPem[0]))
		if err != nil {
			t.Fatal(err)
		}
		if got := chain[0].URIs[0].String(); !allowed[got] {
			t.Fatalf("issued %s", got)
		}
	})
}
