package ca

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/warren-mesh/warren/certs"
	cav1 "github.com/warren-mesh/warren/istiod-lite/api/ca/v1"
)

// Options configure the certificate service.
type Options struct {
	// CA signs the certificates. Required.
	CA *certs.CA
	// Authenticator checks bearer tokens. Required.
	Authenticator Authenticator
	// Pods locates pods for node-scoped impersonation. Required when
	// Impersonators is set.
	Pods PodLocator
	// Impersonators are the service accounts ("<ns>/<name>") of node
	// proxies allowed to request the identities of pods on their own node.
	Impersonators []string
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger hears every refused request (one line each, with the reason).
	// Default: discard.
	Logger *slog.Logger
}

// maxCSRBytes bounds the PEM request; a P-256 CSR is about 500 bytes.
const maxCSRBytes = 16 << 10

// Server implements cav1.CertificateServiceServer.
type Server struct {
	cav1.UnimplementedCertificateServiceServer
	opts          Options
	impersonators map[string]bool
	m             *metrics
}

var _ cav1.CertificateServiceServer = (*Server)(nil)

// NewServer validates opts and registers metrics.
func NewServer(opts Options) (*Server, error) {
	if opts.CA == nil || opts.Authenticator == nil {
		return nil, errors.New("ca: server needs a CA and an authenticator")
	}
	s := &Server{opts: opts, impersonators: map[string]bool{}}
	for _, sa := range opts.Impersonators {
		ns, name, ok := strings.Cut(sa, "/")
		if !ok || ns == "" || name == "" {
			return nil, fmt.Errorf("ca: impersonator %q is not <namespace>/<serviceaccount>", sa)
		}
		s.impersonators[sa] = true
	}
	if len(s.impersonators) > 0 && opts.Pods == nil {
		return nil, errors.New("ca: impersonation needs a pod locator")
	}
	if s.opts.Logger == nil {
		s.opts.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer, opts.CA)
	if err != nil {
		return nil, fmt.Errorf("ca: metrics: %w", err)
	}
	s.m = m
	return s, nil
}

// CreateCertificate implements cav1.CertificateServiceServer.
func (s *Server) CreateCertificate(ctx context.Context, req *cav1.CreateCertificateRequest) (*cav1.CreateCertificateResponse, error) {
	s.m.requests.Inc()
	caller, err := s.opts.Authenticator.Authenticate(ctx, bearerToken(ctx))
	if err != nil {
		if errors.Is(err, ErrUnauthenticated) {
			return nil, s.refuse(ctx, nil, "", codes.Unauthenticated, ReasonUnauthenticated, err.Error())
		}
		return nil, s.refuse(ctx, nil, "", codes.Unavailable, ReasonInternal, err.Error())
	}
	want := caller.ID
	if req.GetImpersonatedIdentity() != "" {
		want, err = spiffeid.FromString(req.GetImpersonatedIdentity())
		if err != nil {
			return nil, s.refuse(ctx, caller, req.GetImpersonatedIdentity(), codes.InvalidArgument, ReasonInvalidRequest, fmt.Sprintf("impersonated_identity: %v", err))
		}
	}
	if code, msg := s.authorize(caller, want); code != codes.OK {
		reason := ReasonPermissionDenied
		switch code {
		case codes.InvalidArgument:
			reason = ReasonInvalidRequest
		case codes.Unavailable:
			reason = ReasonInternal
		}
		return nil, s.refuse(ctx, caller, want.String(), code, reason, msg)
	}
	if len(req.GetCsrPem()) > maxCSRBytes {
		return nil, s.refuse(ctx, caller, want.String(), codes.InvalidArgument, ReasonInvalidRequest, fmt.Sprintf("csr_pem: %d bytes exceeds the %d byte limit", len(req.GetCsrPem()), maxCSRBytes))
	}
	block, rest := pem.Decode([]byte(req.GetCsrPem()))
	if block == nil || block.Type != "CERTIFICATE REQUEST" || strings.TrimSpace(string(rest)) != "" {
		return nil, s.refuse(ctx, caller, want.String(), codes.InvalidArgument, ReasonInvalidRequest, "csr_pem: want exactly one PEM block of type CERTIFICATE REQUEST")
	}
	ttl := time.Duration(req.GetValiditySeconds()) * time.Second
	if req.GetValiditySeconds() < 0 || req.GetValiditySeconds() > int64(s.opts.CA.MaxTTL()/time.Second) {
		return nil, s.refuse(ctx, caller, want.String(), codes.InvalidArgument, ReasonInvalidRequest, fmt.Sprintf("validity_seconds: %d outside 0..%d", req.GetValiditySeconds(), int64(s.opts.CA.MaxTTL()/time.Second)))
	}
	chain, err := s.opts.CA.SignCSR(block.Bytes, want, ttl)
	if err != nil {
		if errors.Is(err, certs.ErrInvalidRequest) {
			return nil, s.refuse(ctx, caller, want.String(), codes.InvalidArgument, ReasonInvalidRequest, err.Error())
		}
		return nil, s.refuse(ctx, caller, want.String(), codes.Internal, ReasonInternal, err.Error())
	}
	s.m.issued.Inc()
	resp := &cav1.CreateCertificateResponse{}
	for _, c := range chain {
		resp.CertChainPem = append(resp.CertChainPem, string(certs.EncodeCertificates(chainOf(c))))
	}
	for _, r := range s.opts.CA.Bundle().Roots() {
		resp.TrustBundlePem = append(resp.TrustBundlePem, string(certs.EncodeCertificates(chainOf(r))))
	}
	return resp, nil
}

// authorize decides whether caller may get identity want.
func (s *Server) authorize(caller *Caller, want spiffeid.ID) (codes.Code, string) {
	if want == caller.ID {
		return codes.OK, ""
	}
	if !want.MemberOf(s.opts.CA.TrustDomain()) {
		return codes.InvalidArgument, fmt.Sprintf("identity %s is outside trust domain %q", want, s.opts.CA.TrustDomain())
	}
	ns, sa, err := certs.ParseWorkloadID(want)
	if err != nil {
		return codes.InvalidArgument, err.Error()
	}
	if !s.impersonators[caller.Namespace+"/"+caller.ServiceAccount] {
		return codes.PermissionDenied, fmt.Sprintf("%s may only request its own identity, not %s", caller.ID, want)
	}
	if caller.Node == "" {
		return codes.PermissionDenied, fmt.Sprintf("node proxy %s presented a token not bound to a node; use a pod-bound projected token", caller.ID)
	}
	nodes, err := s.opts.Pods.NodesFor(ns, sa)
	if err != nil {
		return codes.Unavailable, err.Error()
	}
	if len(nodes) == 0 {
		return codes.PermissionDenied, fmt.Sprintf("no running pod has identity %s", want)
	}
	if !slices.Contains(nodes, caller.Node) {
		return codes.PermissionDenied, fmt.Sprintf("pods with identity %s run on %s, not on the caller's node %q", want, strings.Join(nodes, ","), caller.Node)
	}
	return codes.OK, ""
}

func (s *Server) refuse(ctx context.Context, caller *Caller, want string, code codes.Code, reason, msg string) error {
	s.m.failures.WithLabelValues(reason).Inc()
	attrs := []any{"code", code.String(), "reason", reason, "error", msg}
	if p, ok := peer.FromContext(ctx); ok {
		attrs = append(attrs, "peer", p.Addr.String())
	}
	if caller != nil {
		attrs = append(attrs, "caller", caller.ID.String(), "caller_node", caller.Node)
	}
	if want != "" {
		attrs = append(attrs, "identity", want)
	}
	s.opts.Logger.Warn("ca: certificate request refused", attrs...)
	return status.Error(code, "ca: "+msg)
}

func bearerToken(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if t, ok := strings.CutPrefix(v, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
	}
	return ""
}

func chainOf(c *x509.Certificate) []*x509.Certificate { return []*x509.Certificate{c} }
