package waypoint

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warren-mesh/warren/waypoint/accesslog"
	"github.com/warren-mesh/warren/waypoint/listener"
	"github.com/warren-mesh/warren/waypoint/upstream"
)

// Options configure an Engine. Zero values take the documented defaults.
type Options struct {
	// Store is the configuration; required.
	Store *Store
	// Dialer reaches endpoints; default upstream.TCPDialer (plain TCP).
	// cmd/waypoint passes an HBONE dialer for mesh endpoints.
	Dialer upstream.Dialer
	// Upstream tunes the connection pools.
	Upstream upstream.Options
	// Registerer receives the metrics; default a private registry.
	Registerer prometheus.Registerer
	// AccessLog receives one JSON line per request; nil disables it.
	AccessLog io.Writer
	// Listener tunes the accept side (header limits and timeouts).
	Listener listener.Options
	// MaxReplayBody is the largest request body kept for retries and
	// mirrors; larger bodies stream once and are neither retried nor
	// mirrored. Default 64 KiB.
	MaxReplayBody int64
	// MaxMirrors caps mirrored requests in flight; beyond it mirrors are
	// dropped (counted). Default 256.
	MaxMirrors int
	// MirrorTimeout bounds one mirrored request; default 10s.
	MirrorTimeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Engine is the waypoint's L7 engine: it serves connections handed to it
// (HBONE streams, or plaintext listeners for tests and benchmarks)
// through the request chain in chain.go.
type Engine struct {
	opts      Options
	store     *Store
	client    *upstream.Client
	metrics   *metrics
	log       *accesslog.Logger
	lis       *listener.Server
	now       func() time.Time
	mirrorSem chan struct{}
	bg        sync.WaitGroup
}

var _ listener.Handler = (*Engine)(nil)

// New builds an Engine.
func New(o Options) (*Engine, error) {
	if o.Store == nil {
		return nil, errors.New("waypoint: Options.Store is required")
	}
	if o.Dialer == nil {
		o.Dialer = upstream.TCPDialer{}
	}
	if o.MaxReplayBody == 0 {
		o.MaxReplayBody = 64 << 10
	}
	if o.MaxMirrors == 0 {
		o.MaxMirrors = 256
	}
	if o.MirrorTimeout == 0 {
		o.MirrorTimeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, errors.Join(errors.New("waypoint: metrics"), err)
	}
	e := &Engine{opts: o, store: o.Store, client: upstream.New(o.Dialer, o.Upstream), metrics: m,
		log: accesslog.New(o.AccessLog), now: o.Now, mirrorSem: make(chan struct{}, o.MaxMirrors)}
	e.lis = listener.New(e, o.Listener)
	return e, nil
}

// ServeConn serves one connection (an HBONE stream or a plaintext TCP
// connection) described by m, returning when it is done.
func (e *Engine) ServeConn(c net.Conn, m listener.Meta) { e.lis.ServeConn(c, m) }

// Destination describes what a plaintext listener serves.
type Destination struct {
	// Service is the destination Service key ("<ns>/<hostname>").
	Service string
	// Port is the Service port.
	Port uint32
	// SourceIdentity and SourceNamespace stand in for the tunnel's
	// verified peer (tests of consumer routes and authorization).
	SourceIdentity, SourceNamespace string
}

// ServePlaintext serves the L7 engine on a plain TCP listener, every
// connection addressed to dest (tests, and benchmarks against other
// proxies with the same routes). It returns when ln fails or the Engine
// is closed. The port's declared protocol comes from the configuration.
func (e *Engine) ServePlaintext(ln net.Listener, dest Destination) error {
	return e.lis.Serve(ln, func(c net.Conn) listener.Meta {
		proto := e.store.load().services[dest.Service].protocol(dest.Port)
		return listener.Meta{SourceIdentity: dest.SourceIdentity, SourceNamespace: dest.SourceNamespace,
			SourceAddr: c.RemoteAddr().String(), Service: dest.Service, Port: dest.Port, Protocol: proto}
	})
}

// Shutdown stops accepting and lets requests in flight finish until ctx
// ends; then it closes connections and waits for mirrors.
func (e *Engine) Shutdown(ctx context.Context) error {
	err := e.lis.Shutdown(ctx)
	e.bg.Wait()
	_ = e.client.Close()
	return err
}

// Close closes every connection now.
func (e *Engine) Close() error {
	err := e.lis.Close()
	e.bg.Wait()
	_ = e.client.Close()
	return err
}

// ServeHTTP is defined in chain.go; ServeTCP in tcp.go.
var _ http.Handler = (*Engine)(nil)
