package xds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/warren-mesh/warren/istiod-lite/ca"
)

// Defaults for Options.
const (
	// DefaultDebounce is how long changes are coalesced before a push.
	DefaultDebounce = 20 * time.Millisecond
	// NoDebounce (any negative Debounce) pushes every change at once.
	NoDebounce time.Duration = -1
	// DefaultMaxResponseBytes bounds the resources packed in one response;
	// a larger change is split over several responses.
	DefaultMaxResponseBytes = 1 << 20
	// maxPendingPushes bounds the unanswered responses remembered per
	// proxy and type; older ones are forgotten (their ACK is ignored).
	maxPendingPushes = 256
)

// Options configure a Server.
type Options struct {
	// Authenticator checks the bearer token of every stream (the same
	// ServiceAccount tokens the CA accepts). Required unless
	// AllowUnauthenticated.
	Authenticator ca.Authenticator
	// AllowUnauthenticated serves streams without a token and without
	// authorization: the plaintext test port 15010 only.
	AllowUnauthenticated bool
	// Authorize decides whether a caller may stream a node ID's config.
	// Default DefaultAuthorizer(NodeProxies).
	Authorize Authorizer
	// NodeProxies are the service accounts ("<ns>/<name>") that may act
	// as ztunnel under the default Authorize. Default warren-system/ztunnel.
	NodeProxies []string
	// Scope decides which resources each proxy gets. Default DefaultScope.
	Scope Scope
	// Debounce coalesces changes for this long before pushing them.
	// 0 selects DefaultDebounce (20ms); negative (NoDebounce) pushes at once.
	Debounce time.Duration
	// MaxResponseBytes splits large pushes. Default 1 MiB.
	MaxResponseBytes int
	// ListenAddr, when set, makes Start serve plaintext xDS there (the
	// 15010 test port). In production the server is registered on the
	// TLS gRPC server of port 15012 with Register instead.
	ListenAddr string
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger hears refused streams and NACKs. Default: discard.
	Logger *slog.Logger
}

// Server is istiod-lite's delta-xDS server: it holds the resources the
// translator produced and streams each proxy the part its subscription
// and Scope select, as changes happen.
type Server struct {
	opts Options
	m    *metrics

	// mu guards the store and the proxy set. Lock order: mu, then a
	// Proxy's mu.
	mu         sync.RWMutex
	store      map[string]map[string]*resource
	generation uint64
	lastUpdate time.Time
	proxies    map[string]*Proxy

	connSeq  atomic.Uint64
	nonceSeq atomic.Uint64

	// dmu guards the debounce state.
	dmu          sync.Mutex
	pending      change
	pendingSince time.Time
	timer        *time.Timer
	stopped      bool

	acks     notifier
	counters counters

	closing   chan struct{}
	closeOnce sync.Once
	ready     chan net.Addr
}

var _ discoveryv3.AggregatedDiscoveryServiceServer = (*Server)(nil)

// NewServer validates opts and registers the metrics.
func NewServer(opts Options) (*Server, error) {
	if opts.Authenticator == nil && !opts.AllowUnauthenticated {
		return nil, errors.New("xds: server needs an authenticator (AllowUnauthenticated is for the plaintext test port only)")
	}
	for _, sa := range opts.NodeProxies {
		ns, name, ok := strings.Cut(sa, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("xds: node proxy %q is not <namespace>/<serviceaccount>", sa)
		}
	}
	if opts.Authorize == nil {
		opts.Authorize = DefaultAuthorizer(opts.NodeProxies)
	}
	if opts.Scope == nil {
		opts.Scope = DefaultScope
	}
	if opts.Debounce == 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("xds: metrics: %w", err)
	}
	return &Server{
		opts:    opts,
		m:       m,
		store:   map[string]map[string]*resource{},
		proxies: map[string]*Proxy{},
		closing: make(chan struct{}),
		ready:   make(chan net.Addr, 1),
	}, nil
}

// Register adds the ADS service to gs: in production the TLS server of
// port 15012 that also hosts the certificate service.
func (s *Server) Register(gs grpc.ServiceRegistrar) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, s)
}

// ServerOptions are the gRPC server options xDS wants: static
// flow-control windows (large enough for an initial sync, and no BDP PING
// round trip per small push). Add them to the shared 15012 server.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.InitialWindowSize(4 << 20), grpc.InitialConnWindowSize(4 << 20)}
}

// Serve runs a gRPC server hosting only xDS on lis until ctx ends, then
// stops it (streams end; proxies reconnect). Without a credentials option
// it is plaintext: tests and port 15010 only. ServerOptions come first,
// then opts.
func (s *Server) Serve(ctx context.Context, lis net.Listener, opts ...grpc.ServerOption) error {
	gs := grpc.NewServer(append(ServerOptions(), opts...)...)
	s.Register(gs)
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("xds: serve %s: %w", lis.Addr(), err)
	case <-ctx.Done():
		gs.Stop()
		return nil
	}
}

// Name identifies the runner.
func (s *Server) Name() string { return "xds" }

// Listening yields the bound address once Start serves on ListenAddr.
func (s *Server) Listening() <-chan net.Addr { return s.ready }

// Start serves plaintext on ListenAddr when set, and otherwise waits;
// when ctx ends it closes every stream and stops the debounce timer.
func (s *Server) Start(ctx context.Context) error {
	defer s.Close()
	if s.opts.ListenAddr == "" {
		<-ctx.Done()
		return nil
	}
	lis, err := net.Listen("tcp", s.opts.ListenAddr)
	if err != nil {
		return fmt.Errorf("xds: listen: %w", err)
	}
	s.ready <- lis.Addr()
	return s.Serve(ctx, lis)
}

// Close ends every stream (with Unavailable) and stops pushing.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.dmu.Lock()
		s.stopped = true
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
		}
		s.dmu.Unlock()
	})
}

// StreamAggregatedResources refuses state-of-the-world xDS.
func (s *Server) StreamAggregatedResources(grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	return status.Error(codes.Unimplemented, "xds: only delta xDS (DeltaAggregatedResources) is served")
}

type deltaStream = grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]

// DeltaAggregatedResources serves one proxy: authenticate the token,
// authorize the node ID of the first request, then answer requests and
// push changes until the stream ends.
func (s *Server) DeltaAggregatedResources(stream deltaStream) error {
	ctx := stream.Context()
	var caller *ca.Caller
	if s.opts.Authenticator != nil {
		c, err := s.opts.Authenticator.Authenticate(ctx, bearerToken(ctx))
		if err != nil {
			if errors.Is(err, ca.ErrUnauthenticated) {
				return s.refuse(ctx, "", nil, codes.Unauthenticated, reasonUnauthenticated, err.Error())
			}
			return s.refuse(ctx, "", nil, codes.Unavailable, reasonInternal, "authenticating: "+err.Error())
		}
		caller = c
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	id := first.GetNode().GetId()
	if id == "" {
		return s.refuse(ctx, "", caller, codes.InvalidArgument, reasonInvalid, "the first request must carry node.id (ztunnel~<node> or waypoint~<namespace>/<gateway>~<pod>)")
	}
	node, err := ParseNodeID(id)
	if err != nil {
		return s.refuse(ctx, id, caller, codes.InvalidArgument, reasonInvalid, strings.TrimPrefix(err.Error(), "xds: "))
	}
	if caller != nil {
		if err := s.opts.Authorize(caller, node); err != nil {
			return s.refuse(ctx, id, caller, codes.PermissionDenied, reasonPermissionDenied, err.Error())
		}
	}
	p := s.connect(ctx, id, node, caller)
	defer s.disconnect(p)
	if err := s.handleRequest(p, first); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err == nil {
				err = s.handleRequest(p, req)
			}
			if err != nil {
				errc <- err
				return
			}
		}
	}()
	for {
		select {
		case <-p.kick:
			if err := s.push(stream, p); err != nil {
				return err
			}
		case err := <-errc:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.closing:
			return status.Error(codes.Unavailable, "xds: server shutting down")
		}
	}
}

func (s *Server) connect(ctx context.Context, id string, node NodeID, caller *ca.Caller) *Proxy {
	p := &Proxy{
		ID:          id,
		Conn:        id + "#" + strconv.FormatUint(s.connSeq.Add(1), 10),
		Node:        node,
		Caller:      caller,
		ConnectedAt: time.Now(),
		kick:        make(chan struct{}, 1),
		types:       map[string]*typeState{},
		dirty:       map[string]map[string]struct{}{},
		dirtyAll:    map[string]bool{},
		dirtySince:  map[string]time.Time{},
	}
	if pr, ok := peer.FromContext(ctx); ok {
		p.Peer = pr.Addr.String()
	}
	s.mu.Lock()
	s.proxies[p.Conn] = p
	s.mu.Unlock()
	s.m.connected.Inc()
	return p
}

func (s *Server) disconnect(p *Proxy) {
	s.mu.Lock()
	delete(s.proxies, p.Conn)
	s.mu.Unlock()
	s.m.connected.Dec()
	s.acks.broadcast() // nobody waits for this proxy any more
}

// Proxies lists the connected streams.
func (s *Server) Proxies() []*Proxy {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Proxy, 0, len(s.proxies))
	for _, p := range s.proxies {
		out = append(out, p)
	}
	sortProxies(out)
	return out
}

func (s *Server) refuse(ctx context.Context, id string, caller *ca.Caller, code codes.Code, reason, msg string) error {
	s.m.refused.WithLabelValues(reason).Inc()
	attrs := []any{"code", code.String(), "reason", reason, "error", msg}
	if pr, ok := peer.FromContext(ctx); ok {
		attrs = append(attrs, "peer", pr.Addr.String())
	}
	if id != "" {
		attrs = append(attrs, "node_id", id)
	}
	if caller != nil {
		attrs = append(attrs, "caller", caller.ID.String(), "caller_node", caller.Node)
	}
	s.opts.Logger.Warn("xds: stream refused", attrs...)
	return status.Error(code, "xds: "+msg)
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

// notifier wakes everyone waiting when something changes.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) broadcast() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}
