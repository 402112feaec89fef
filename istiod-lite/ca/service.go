package ca

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/warren-mesh/warren/certs"
)

// ServiceOptions configure the runnable certificate service.
type ServiceOptions struct {
	// Addr to listen on (":15012").
	Addr string
	// ServerID is istiod-lite's own SPIFFE ID, presented on the TLS port.
	ServerID spiffeid.ID
	// DNSNames are added to the serving certificate for host-name clients.
	DNSNames []string
	// ServingTTL is the serving certificate lifetime. Default 24h.
	ServingTTL time.Duration
	// Register adds more services to the same gRPC server (xDS).
	Register []func(grpc.ServiceRegistrar)
	// GRPCOptions are extra server options (e.g. xds.ServerOptions()).
	GRPCOptions []grpc.ServerOption
}

// Service runs a Server on its TLS port with a rotating serving identity.
type Service struct {
	opts    ServiceOptions
	ca      *certs.CA
	srv     *Server
	serving *certs.IdentitySource
	ready   chan net.Addr
}

// NewService wires srv to a listener; Start runs it.
func NewService(authority *certs.CA, srv *Server, opts ServiceOptions) (*Service, error) {
	if opts.Addr == "" || opts.ServerID.IsZero() {
		return nil, errors.New("ca: service needs an address and a server identity")
	}
	if opts.ServingTTL <= 0 {
		opts.ServingTTL = certs.DefaultSVIDTTL
	}
	serving, err := NewServingIdentity(authority, opts.ServerID, opts.DNSNames, opts.ServingTTL)
	if err != nil {
		return nil, err
	}
	return &Service{opts: opts, ca: authority, srv: srv, serving: serving, ready: make(chan net.Addr, 1)}, nil
}

// Name identifies the runner.
func (s *Service) Name() string { return "ca" }

// Listening yields the bound address once the service accepts calls.
func (s *Service) Listening() <-chan net.Addr { return s.ready }

// Serving exposes the serving identity (for status pages).
func (s *Service) Serving() *certs.IdentitySource { return s.serving }

// Start serves until ctx ends.
func (s *Service) Start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.serving.Run(ctx)
	go func() {
		// Every rotation step re-issues the serving certificate, so after
		// a signer switch it chains to the new root before the old one is
		// retired.
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.ca.Changed():
				s.serving.Renew()
			}
		}
	}()
	select {
	case <-s.serving.Ready():
	case <-ctx.Done():
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("ca: no serving certificate after 10s: %v", s.serving.Status().LastError)
	}
	lis, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("ca: listen: %w", err)
	}
	s.ready <- lis.Addr()
	return s.srv.ServeWith(ctx, lis, ServerTLSConfig(s.serving), s.opts.Register, s.opts.GRPCOptions...)
}
