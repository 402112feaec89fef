package ca_test

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// BenchmarkCreateCertificateGRPC is one SVID end to end through the running
// service on loopback TLS: client key generation and CSR, gRPC call, token
// check, signing, response parsing. Run with -cpu 1 for the one-core figure.
func BenchmarkCreateCertificateGRPC(b *testing.B) {
	f := startCA(b)
	c := f.client(b, webToken)
	ctx := context.Background()
	if _, err := c.Sign(ctx, spiffeid.ID{}, time.Hour); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Sign(ctx, spiffeid.ID{}, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}
