package client

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"

	"google.golang.org/grpc/metadata"
)

func withBearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// x509CreateCSR makes a request with no SAN: the CA fills in the caller's
// own identity.
func x509CreateCSR(key crypto.Signer) ([]byte, error) {
	return x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
}
