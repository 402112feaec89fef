package hbone

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/warren-mesh/warren/certs"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Server defaults.
const (
	DefaultMaxConcurrentStreams = 250
	DefaultServerIdleTimeout    = 10 * time.Minute
	DefaultHandshakeTimeout     = 10 * time.Second
	DefaultMaxHeaderListSize    = 16 << 10
)

// ErrServerClosed is returned by Serve and ServeConn once Shutdown or Close
// was called.
var ErrServerClosed = errors.New("hbone: server closed")

// Handler answers HBONE requests. ServeHBONE runs in a goroutine of its own
// per stream and owns the request until it returns: it either rejects it
// (Request.Reject) or accepts it (Request.Accept) and uses the Stream. When
// ServeHBONE returns, an unanswered request gets 500 and an accepted stream
// is closed.
type Handler interface {
	ServeHBONE(r *Request)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(r *Request)

// ServeHBONE calls f(r).
func (f HandlerFunc) ServeHBONE(r *Request) { f(r) }

// ServerOptions configure a Server. Zero values take the defaults.
type ServerOptions struct {
	// TLSConfig is the server side of HBONE, normally
	// certs.HBONEServerConfig (TLS 1.3, ALPN h2, client certificate
	// verified against the trust bundle). Required.
	TLSConfig *tls.Config
	// Handler answers requests. Required.
	Handler Handler
	// MaxConcurrentStreams per connection, advertised to clients; it also
	// bounds the running handlers per connection. Default 250.
	MaxConcurrentStreams uint32
	// IdleTimeout closes a connection (GOAWAY) that has had no stream for
	// this long. Default 10 minutes (longer than the pool's, so clients
	// normally close first); negative disables it.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake, the HTTP/2 preface and the
	// client's first SETTINGS. Default 10s.
	HandshakeTimeout time.Duration
	// MaxHeaderListSize bounds a request's header block; larger requests
	// get 431 (or, if far larger, the connection is closed). Default 16 KiB.
	MaxHeaderListSize uint32
}

// Server is the receiving end of HBONE: it terminates mutual TLS, checks
// each CONNECT request and hands it to the Handler.
type Server struct {
	opts ServerOptions
	ctx  context.Context
	stop context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	pending   map[net.Conn]struct{} // in the TLS handshake
	conns     map[*conn]struct{}
	shutdown  bool
	gone      chan struct{} // closed and replaced whenever a connection ends
}

// ServerStats is a snapshot for metrics and admin endpoints.
type ServerStats struct {
	Connections int // established HBONE connections
	Streams     int // open streams
	Handlers    int // running handlers
}

// NewServer checks opts and returns a server.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.TLSConfig == nil {
		return nil, errors.New("hbone: server needs a TLS config (certs.HBONEServerConfig)")
	}
	if opts.Handler == nil {
		return nil, errors.New("hbone: server needs a handler")
	}
	if opts.MaxConcurrentStreams == 0 {
		opts.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultServerIdleTimeout
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if opts.MaxHeaderListSize == 0 {
		opts.MaxHeaderListSize = DefaultMaxHeaderListSize
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Server{
		opts: opts, ctx: ctx, stop: stop,
		listeners: map[net.Listener]struct{}{},
		pending:   map[net.Conn]struct{}{},
		conns:     map[*conn]struct{}{},
		gone:      make(chan struct{}),
	}, nil
}

// Serve accepts connections on ln and serves each in its own goroutine
// until Shutdown or Close (then it returns ErrServerClosed) or a permanent
// accept error.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			down := s.shutdown
			s.mu.Unlock()
			if down {
				return ErrServerClosed
			}
			if !temporary(err) {
				return fmt.Errorf("hbone: accept on %s: %w", ln.Addr(), err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go s.ServeConn(s.ctx, nc)
	}
}

func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.ECONNABORTED, syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ServeConn serves one accepted connection until it ends: TLS handshake,
// then HTTP/2. Cancelling ctx closes the connection at once (its streams
// fail); Shutdown drains it. ServeConn returns after the connection's
// handlers have returned: nil when it ended normally (the peer hung up,
// idle timeout, drained), otherwise the reason.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) error {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		nc.Close()
		return ErrServerClosed
	}
	s.pending[nc] = struct{}{}
	s.mu.Unlock()

	bc := newBatchConn(nc)
	tc, peer, err := s.handshake(ctx, nc, bc)
	s.mu.Lock()
	delete(s.pending, nc)
	if err == nil && s.shutdown {
		err = ErrServerClosed
	}
	if err != nil {
		s.mu.Unlock()
		nc.Close()
		s.connGone()
		return err
	}
	return s.serveHTTP2(ctx, tc, nc, bc, peer, nil)
}

// serveHTTP2 runs HTTP/2 on an established connection whose preface has
// been read (see conn.attach for the arguments). It is called with s.mu
// held and releases it.
func (s *Server) serveHTTP2(ctx context.Context, nc, raw net.Conn, bc *batchConn, peer spiffeid.ID, r io.Reader) error {
	sc := &serverConn{srv: s}
	c := newConn(sc, true, s.opts.IdleTimeout, s.opts.MaxHeaderListSize, s.opts.MaxConcurrentStreams)
	sc.c = c
	sc.ctx, sc.cancel = context.WithCancel(ctx)
	s.conns[c] = struct{}{}
	s.mu.Unlock()

	stop := context.AfterFunc(ctx, func() {
		c.abort(fmt.Errorf("hbone: connection from %s: %w", raw.RemoteAddr(), context.Cause(ctx)))
	})
	var err error
	if c.attach(nc, raw, bc, peer, r) {
		err = c.run()
	} else {
		err = ErrServerClosed
	}
	stop()
	sc.cancel()
	sc.wg.Wait()

	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.connGone()
	if errors.Is(err, io.EOF) || errors.Is(err, errDrained) {
		return nil
	}
	return err
}

// errDrained marks connections closed on purpose (idle, GOAWAY drained).
var errDrained = errors.New("hbone: connection drained")

// handshake runs TLS (over bc, which wraps nc) and reads the client
// preface within HandshakeTimeout.
func (s *Server) handshake(ctx context.Context, nc net.Conn, bc *batchConn) (*tls.Conn, spiffeid.ID, error) {
	deadline := time.Now().Add(s.opts.HandshakeTimeout)
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	tc := tls.Server(bc, s.opts.TLSConfig)
	if err := tc.HandshakeContext(hctx); err != nil {
		return nil, spiffeid.ID{}, fmt.Errorf("hbone: TLS handshake with %s: %w", nc.RemoteAddr(), err)
	}
	peer, err := certs.PeerID(tc.ConnectionState())
	if err != nil {
		return nil, spiffeid.ID{}, fmt.Errorf("hbone: client %s: %w", nc.RemoteAddr(), err)
	}
	// The deadline also covers the preface and the first SETTINGS frame;
	// the read loop clears it after that frame.
	tc.SetReadDeadline(deadline)
	if err := readPreface(tc); err != nil {
		return nil, spiffeid.ID{}, fmt.Errorf("hbone: client %s (%s): %w", nc.RemoteAddr(), peer, err)
	}
	return tc, peer, nil
}

func readPreface(r io.Reader) error {
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(r, preface); err != nil {
		return fmt.Errorf("reading the HTTP/2 preface: %w", err)
	}
	if string(preface) != http2.ClientPreface {
		return errors.New("no HTTP/2 preface")
	}
	return nil
}

func (s *Server) connGone() {
	s.mu.Lock()
	close(s.gone)
	s.gone = make(chan struct{})
	s.mu.Unlock()
}

// Shutdown stops accepting, sends GOAWAY on every connection so clients
// open no new streams, and waits until the open streams have finished and
// their handlers returned, or until ctx ends: then it closes what is left
// and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	for ln := range s.listeners {
		ln.Close()
	}
	for nc := range s.pending {
		nc.Close()
	}
	for c := range s.conns {
		c.mu.Lock()
		c.drainLocked()
		c.mu.Unlock()
	}
	s.mu.Unlock()
	for {
		s.mu.Lock()
		left := len(s.conns) + len(s.pending)
		gone := s.gone
		s.mu.Unlock()
		if left == 0 {
			return nil
		}
		select {
		case <-gone:
		case <-ctx.Done():
			s.Close()
			return fmt.Errorf("hbone: shutdown: %d connection(s) still open: %w", left, ctx.Err())
		}
	}
}

// Close stops accepting and closes every connection at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.shutdown = true
	for ln := range s.listeners {
		ln.Close()
	}
	for nc := range s.pending {
		nc.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.stop()
	for _, c := range conns {
		c.abort(ErrServerClosed)
	}
	return nil
}

// Stats reports open connections, streams and handlers.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := ServerStats{Connections: len(s.conns)}
	for c := range s.conns {
		c.mu.Lock()
		st.Streams += len(c.streams)
		st.Handlers += c.role.loadLocked()
		c.mu.Unlock()
	}
	return st
}

// refuseBudget is how many streams over the concurrency limit a client may
// open (racing our SETTINGS) before it is treated as a flood.
const refuseBudget = 100

// serverConn is the server role of a conn.
type serverConn struct {
	srv      *Server
	c        *conn
	ctx      context.Context
	cancel   context.CancelFunc
	handlers int // guarded by c.mu
	wg       sync.WaitGroup
}

func (sc *serverConn) loadLocked() int { return sc.handlers }

func (sc *serverConn) closed() {}

func (sc *serverConn) idle() {
	c := sc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idleExpiredLocked() {
		c.closeGracefullyLocked(fmt.Errorf("%w: idle for %v", errDrained, c.idleTimeout))
	}
}

func (sc *serverConn) headers(f *http2.MetaHeadersFrame) error {
	c := sc.c
	id := f.StreamID
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		// The writer failed while this frame sat in the read buffer:
		// nobody would ever fail a stream opened now.
		return c.err
	}
	if s := c.streams[id]; s != nil {
		// Only DATA and stream management frames may follow on a
		// CONNECT stream (RFC 9113 §8.5): no trailers.
		c.resetLocked(s, http2.ErrCodeProtocol, fmt.Errorf("%w: HEADERS on an established tunnel", ErrStreamReset))
		return nil
	}
	if id%2 == 0 || id <= c.lastPeerID {
		return connErr(http2.ErrCodeProtocol, "%s sent HEADERS for stream %d after stream %d", c.remote, id, c.lastPeerID)
	}
	c.lastPeerID = id
	if c.goAwaySent {
		c.wfr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
		c.kickLocked()
		return c.backlogLocked()
	}
	authority, hdr, status := checkRequest(f.Fields, f.Truncated)
	if status != 0 {
		c.writeHeadersLocked(id, true, statusFields(status))
		if !f.StreamEnded() {
			c.wfr.WriteRSTStream(id, http2.ErrCodeNo)
		}
		return c.backlogLocked()
	}
	if max := int(c.maxStreams); len(c.streams) >= max || sc.handlers >= max {
		c.wfr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
		c.kickLocked()
		if c.refused++; c.refused > max+refuseBudget {
			return connErr(http2.ErrCodeEnhanceYourCalm, "%s opened %d streams over the limit of %d", c.remote, c.refused, max)
		}
		return c.backlogLocked()
	}
	s := c.newStreamLocked(id)
	s.recvEOF = f.StreamEnded()
	ctx, cancel := context.WithCancel(sc.ctx)
	s.cancel = cancel
	r := &Request{
		Authority:  authority,
		Peer:       c.peer,
		LocalAddr:  c.raw.LocalAddr(),
		RemoteAddr: c.raw.RemoteAddr(),
		Header:     hdr,
		ctx:        ctx,
		s:          s,
	}
	sc.handlers++
	sc.wg.Add(1)
	go sc.serve(r)
	return nil
}

func (sc *serverConn) serve(r *Request) {
	defer func() {
		r.finish()
		c := sc.c
		c.mu.Lock()
		sc.handlers--
		c.loadChangedLocked()
		c.mu.Unlock()
		sc.wg.Done()
	}()
	sc.srv.opts.Handler.ServeHBONE(r)
}

var status200 = []hpack.HeaderField{{Name: ":status", Value: "200"}}

func statusFields(code int) []hpack.HeaderField {
	if code == http.StatusOK {
		return status200
	}
	return []hpack.HeaderField{{Name: ":status", Value: strconv.Itoa(code)}}
}

// Request is an HBONE CONNECT request that passed protocol checks.
type Request struct {
	// Authority is the tunnel's final destination (the :authority).
	Authority netip.AddrPort
	// Peer is the client's verified SPIFFE ID.
	Peer spiffeid.ID
	// LocalAddr and RemoteAddr are the HBONE connection's addresses.
	LocalAddr, RemoteAddr net.Addr
	// Header holds the regular request headers (baggage, traceparent,
	// Forwarded, …), canonicalized.
	Header http.Header

	ctx context.Context
	s   *Stream
}

// Context is cancelled when the client resets the stream, the connection
// ends, or the handler returns.
func (r *Request) Context() context.Context { return r.ctx }

// ForwardedFor is the original client address from the Forwarded header.
func (r *Request) ForwardedFor() (netip.Addr, bool) {
	return ParseForwardedFor(r.Header.Get("Forwarded"))
}

// Accept answers 200 and returns the tunnel. It fails if the request was
// already answered or the client gave up on it.
func (r *Request) Accept() (*Stream, error) {
	s := r.s
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := r.answerLocked(); err != nil {
		return nil, err
	}
	c.writeHeadersLocked(s.id, false, status200)
	return s, nil
}

// Reject answers status (400–599, e.g. 401 for an authorization deny, 503
// for an unreachable destination) and ends the stream.
func (r *Request) Reject(status int) error {
	if status < 400 || status > 599 {
		return fmt.Errorf("hbone: reject CONNECT %s with status %d: want 400-599", r.Authority, status)
	}
	s := r.s
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := r.answerLocked(); err != nil {
		return err
	}
	r.rejectLocked(status)
	return nil
}

func (r *Request) answerLocked() error {
	s := r.s
	c := s.c
	if s.answered {
		return fmt.Errorf("hbone: CONNECT %s from %s: already answered", r.Authority, r.Peer)
	}
	if s.resetErr != nil {
		return fmt.Errorf("hbone: CONNECT %s from %s: %w", r.Authority, r.Peer, s.resetErr)
	}
	s.answered = true
	// Answered streams pay back abuse budgets.
	if c.earlyResets > 0 {
		c.earlyResets--
	}
	if c.refused > 0 {
		c.refused--
	}
	return nil
}

func (r *Request) rejectLocked(status int) {
	s := r.s
	c := s.c
	c.writeHeadersLocked(s.id, true, statusFields(status))
	s.sentEnd = true
	if s.recvEOF {
		c.maybeDetachLocked(s)
	} else {
		c.resetLocked(s, http2.ErrCodeNo, fmt.Errorf("%w: rejected with %d", ErrStreamReset, status))
	}
}

// finish runs after the handler: answer 500 if it did not answer, close
// the stream, cancel the context.
func (r *Request) finish() {
	s := r.s
	c := s.c
	c.mu.Lock()
	if !s.answered && s.resetErr == nil {
		s.answered = true
		r.rejectLocked(http.StatusInternalServerError)
	}
	c.mu.Unlock()
	s.Close()
}
