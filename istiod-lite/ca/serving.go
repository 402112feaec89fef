package ca

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/warren-mesh/warren/certs"
	cav1 "github.com/warren-mesh/warren/istiod-lite/api/ca/v1"
)

// NewServingIdentity returns the rotating identity of istiod-lite's own
// TLS server, signed in process by ca: the SPIFFE ID id plus dnsNames (for
// clients that verify a host name). Run it before serving.
func NewServingIdentity(ca *certs.CA, id spiffeid.ID, dnsNames []string, ttl time.Duration) (*certs.IdentitySource, error) {
	return certs.NewIdentitySource(certs.IdentityOptions{
		ID: id,
		Fetch: func(context.Context) (*x509svid.SVID, error) {
			key, err := certs.GenerateKey()
			if err != nil {
				return nil, err
			}
			chain, err := ca.SignServing(key.Public(), id, ttl, dnsNames)
			if err != nil {
				return nil, err
			}
			return certs.SVIDFromChain(chain, key)
		},
	})
}

// ServerTLSConfig is the TLS configuration of port 15012: TLS 1.3, ALPN h2,
// the serving certificate from src. Callers authenticate with bearer tokens,
// not client certificates.
func ServerTLSConfig(src x509svid.Source) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			svid, err := src.GetX509SVID()
			if err != nil {
				return nil, fmt.Errorf("ca: serving certificate: %w", err)
			}
			return certs.TLSCertificate(svid), nil
		},
	}
}

// Serve runs the certificate service on lis with TLS config tlsConf until
// ctx ends, then stops gracefully (at most 5s for in-flight calls).
func (s *Server) Serve(ctx context.Context, lis net.Listener, tlsConf *tls.Config, opts ...grpc.ServerOption) error {
	return s.ServeWith(ctx, lis, tlsConf, nil, opts...)
}

// ServeWith is Serve with more services on the same gRPC server (xDS
// shares port 15012 with the CA). Requests are capped at 4 MiB; the CA
// handler bounds its own CSR size.
func (s *Server) ServeWith(ctx context.Context, lis net.Listener, tlsConf *tls.Config, register []func(grpc.ServiceRegistrar), opts ...grpc.ServerOption) error {
	gs := grpc.NewServer(append([]grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(tlsConf)),
		grpc.MaxRecvMsgSize(4 << 20),
	}, opts...)...)
	cav1.RegisterCertificateServiceServer(gs, s)
	for _, r := range register {
		r(gs)
	}
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("ca: serve %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		gs.Stop()
	}
	return nil
}
