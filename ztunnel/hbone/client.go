package hbone

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/warren-mesh/warren/certs"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Pool defaults.
const (
	DefaultMaxStreamsPerConn = 100
	DefaultPoolIdleTimeout   = 5 * time.Minute
	DefaultConnectTimeout    = 10 * time.Second
)

// ErrPoolClosed is returned by Dial after Close.
var ErrPoolClosed = errors.New("hbone: pool closed")

// PoolOptions configure a Pool. Zero values take the defaults.
type PoolOptions struct {
	// MaxStreamsPerConn caps the open streams on one connection; beyond it
	// the pool opens another connection. The server's
	// SETTINGS_MAX_CONCURRENT_STREAMS lowers it further. Default 100.
	MaxStreamsPerConn int
	// IdleTimeout closes a connection that has had no stream for this long.
	// Default 5 minutes; negative disables it.
	IdleTimeout time.Duration
	// ConnectTimeout bounds TCP connect plus TLS handshake of a new
	// connection, independently of the Dial contexts waiting for it.
	// Default 10s.
	ConnectTimeout time.Duration
	// DialContext opens the TCP connection (to set socket marks or the
	// source address, say). Default a net.Dialer.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)
	// TLSOptions tune certs.HBONEClientConfig (its clock).
	TLSOptions certs.TLSOptions
}

// DialRequest describes one tunnel.
type DialRequest struct {
	// Addr is the HBONE peer, normally <destination node or pod ip>:15008.
	Addr netip.AddrPort
	// Authority is the tunnel's final destination, sent as :authority.
	Authority netip.AddrPort
	// Source is the local identity presented to the peer.
	Source x509svid.Source
	// Bundle verifies the peer's chain.
	Bundle *certs.TrustBundle
	// ServerID is the identity the peer must present.
	ServerID spiffeid.ID
	// ForwardedFor, if valid, is sent as "Forwarded: for=<addr>" (the
	// original client).
	ForwardedFor netip.Addr
	// Header carries further request headers (baggage, traceparent, …).
	Header http.Header
}

// StatusError is a non-200 answer to CONNECT.
type StatusError struct {
	Code      int
	Addr      netip.AddrPort // the HBONE peer
	Authority netip.AddrPort // the requested destination
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("hbone: CONNECT %s via %s: %d %s", e.Authority, e.Addr, e.Code, http.StatusText(e.Code))
}

// Pool opens HBONE streams, sharing connections per (source identity,
// peer address, peer identity) up to a stream cap per connection.
// Connections that fail or receive GOAWAY take no new streams; idle ones
// close after IdleTimeout.
type Pool struct {
	opts   PoolOptions
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[poolKey][]*clientConn
	closed bool
}

type poolKey struct {
	src    spiffeid.ID
	addr   netip.AddrPort
	server spiffeid.ID
}

// PoolStats is a snapshot for metrics and admin endpoints.
type PoolStats struct {
	Connections int // established connections
	Dialing     int // connections in TCP connect or TLS handshake
	Streams     int // open streams
}

// NewPool returns an empty pool.
func NewPool(opts PoolOptions) *Pool {
	if opts.MaxStreamsPerConn <= 0 {
		opts.MaxStreamsPerConn = DefaultMaxStreamsPerConn
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultPoolIdleTimeout
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.DialContext == nil {
		opts.DialContext = (&net.Dialer{}).DialContext
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Pool{opts: opts, ctx: ctx, cancel: cancel, conns: map[poolKey][]*clientConn{}}
}

// Dial opens a tunnel to req.Authority through the HBONE peer req.Addr and
// returns it once the peer answered 200. A non-200 answer is a
// *StatusError. A stream the peer refused or never processed (GOAWAY,
// a reused connection that died) is retried on another connection, up to
// three attempts in all.
// ctx bounds the whole call, not the returned stream.
func (p *Pool) Dial(ctx context.Context, req DialRequest) (*Stream, error) {
	fields, err := req.fields()
	if err != nil {
		return nil, err
	}
	svid, err := req.Source.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("hbone: CONNECT %s via %s: local identity: %w", req.Authority, req.Addr, err)
	}
	key := poolKey{src: svid.ID, addr: req.Addr, server: req.ServerID}
	for attempt := 0; ; attempt++ {
		cc, err := p.reserve(key, &req)
		if err != nil {
			return nil, err
		}
		select {
		case <-cc.ready:
		case <-ctx.Done():
			cc.unreserve()
			return nil, fmt.Errorf("hbone: CONNECT %s via %s: %w", req.Authority, req.Addr, ctx.Err())
		}
		if cc.dialErr != nil {
			cc.unreserve()
			return nil, cc.dialErr
		}
		s, retry, err := cc.open(ctx, &req, fields)
		if err == nil {
			return s, nil
		}
		if !retry || attempt >= maxDialAttempts-1 || ctx.Err() != nil {
			return nil, err
		}
	}
}

func (req *DialRequest) fields() ([]hpack.HeaderField, error) {
	switch {
	case !req.Addr.IsValid() || req.Addr.Port() == 0:
		return nil, fmt.Errorf("hbone: dial: invalid peer address %v", req.Addr)
	case !req.Authority.IsValid() || req.Authority.Port() == 0:
		return nil, fmt.Errorf("hbone: dial %s: invalid authority %v", req.Addr, req.Authority)
	case req.Source == nil || req.Bundle == nil || req.ServerID.IsZero():
		return nil, fmt.Errorf("hbone: dial %s: source, bundle and server identity are required", req.Addr)
	}
	fields := make([]hpack.HeaderField, 0, 3+len(req.Header))
	fields = append(fields,
		hpack.HeaderField{Name: ":method", Value: http.MethodConnect},
		hpack.HeaderField{Name: ":authority", Value: req.Authority.String()})
	if req.ForwardedFor.IsValid() {
		fields = append(fields, hpack.HeaderField{Name: "forwarded", Value: FormatForwardedFor(req.ForwardedFor)})
	}
	for k, vs := range req.Header {
		name := strings.ToLower(k)
		if !httpguts.ValidHeaderFieldName(k) || connectionSpecific(name, "") || (name == "forwarded" && req.ForwardedFor.IsValid()) {
			return nil, fmt.Errorf("hbone: dial %s: header %q not allowed", req.Addr, k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return nil, fmt.Errorf("hbone: dial %s: invalid value for header %q", req.Addr, k)
			}
			fields = append(fields, hpack.HeaderField{Name: name, Value: v})
		}
	}
	return fields, nil
}

// reserve finds a connection with a free stream slot for key or starts
// dialing one, and reserves the slot.
func (p *Pool) reserve(key poolKey, req *DialRequest) (*clientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrPoolClosed
	}
	for _, cc := range p.conns[key] {
		if cc.tryReserve(p.opts.MaxStreamsPerConn) {
			return cc, nil
		}
	}
	cc := &clientConn{pool: p, key: key, ready: make(chan struct{}), reserved: 1}
	cc.c = newConn(cc, false, p.opts.IdleTimeout, DefaultMaxHeaderListSize, 0)
	cc.c.remote = req.Addr.String()
	p.conns[key] = append(p.conns[key], cc)
	go p.dial(cc, *req)
	return cc, nil
}

// dial connects and handshakes a new connection.
func (p *Pool) dial(cc *clientConn, req DialRequest) {
	ctx, cancel := context.WithTimeout(p.ctx, p.opts.ConnectTimeout)
	defer cancel()
	tc, raw, bc, err := p.handshake(ctx, &req)
	p.mu.Lock()
	if err == nil && p.closed {
		tc.Close()
		err = ErrPoolClosed
	}
	if err != nil {
		cc.dialErr = err
		p.removeLocked(cc)
		close(cc.ready)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	if !cc.c.attach(tc, raw, bc, req.ServerID, nil) {
		cc.dialErr = fmt.Errorf("hbone: connect to %s: %w", req.Addr, ErrPoolClosed)
		close(cc.ready)
		return
	}
	close(cc.ready)
	cc.c.run()
}

func (p *Pool) handshake(ctx context.Context, req *DialRequest) (*tls.Conn, net.Conn, *batchConn, error) {
	raw, err := p.opts.DialContext(ctx, "tcp", req.Addr.String())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("hbone: connect to %s: %w", req.Addr, err)
	}
	bc := newBatchConn(raw)
	tc := tls.Client(bc, certs.HBONEClientConfig(req.Source, req.Bundle, req.ServerID, p.opts.TLSOptions))
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, nil, nil, fmt.Errorf("hbone: TLS handshake with %s (want %s): %w", req.Addr, req.ServerID, err)
	}
	return tc, raw, bc, nil
}

func (p *Pool) removeLocked(cc *clientConn) {
	list := p.conns[cc.key]
	for i, x := range list {
		if x == cc {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(p.conns, cc.key)
	} else {
		p.conns[cc.key] = list
	}
}

// Stats reports connections and streams.
func (p *Pool) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	var st PoolStats
	for _, list := range p.conns {
		for _, cc := range list {
			select {
			case <-cc.ready:
			default:
				st.Dialing++
				continue
			}
			cc.c.mu.Lock()
			if !cc.c.closed {
				st.Connections++
				st.Streams += len(cc.c.streams)
			}
			cc.c.mu.Unlock()
		}
	}
	return st
}

// Close closes every connection; their streams fail and later Dials return
// ErrPoolClosed.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	var all []*clientConn
	for _, list := range p.conns {
		all = append(all, list...)
	}
	p.mu.Unlock()
	p.cancel()
	for _, cc := range all {
		cc.c.abort(ErrPoolClosed)
	}
	return nil
}

// clientConn is the client role of a conn.
type clientConn struct {
	c        *conn
	pool     *Pool
	key      poolKey
	ready    chan struct{} // closed once dialed (or failed)
	dialErr  error         // set before ready closes
	reserved int           // slots promised to Dials; guarded by c.mu
}

func (cc *clientConn) loadLocked() int { return cc.reserved }

// tryReserve takes a stream slot if the connection has one (p.mu held).
func (cc *clientConn) tryReserve(limit int) bool {
	c := cc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc.dialErr != nil || c.closed || c.goAwaySent || c.goAwayRecv || c.closeAfterFlush {
		return false
	}
	if int64(c.peerMaxStreams) < int64(limit) {
		limit = int(c.peerMaxStreams)
	}
	used := len(c.streams) + cc.reserved
	if used >= limit || int64(c.nextID)+2*int64(used) > maxStreamID {
		return false
	}
	cc.reserved++
	c.loadChangedLocked()
	return true
}

const (
	maxStreamID     = 1<<31 - 1
	maxDialAttempts = 3
)

func (cc *clientConn) unreserve() {
	c := cc.c
	c.mu.Lock()
	cc.reserved--
	c.loadChangedLocked()
	c.mu.Unlock()
}

// open sends CONNECT on a reserved slot and waits for the answer. retry
// reports whether the peer certainly did not process the stream.
func (cc *clientConn) open(ctx context.Context, req *DialRequest, fields []hpack.HeaderField) (s *Stream, retry bool, err error) {
	c := cc.c
	c.mu.Lock()
	cc.reserved--
	if c.closed {
		// A connection that dies before its first stream (the server
		// refusing our certificate, say) is not worth a retry.
		err, reused := c.err, c.nextID > 1
		c.mu.Unlock()
		return nil, reused, fmt.Errorf("hbone: CONNECT %s via %s: %w", req.Authority, req.Addr, err)
	}
	if c.goAwaySent || c.goAwayRecv || c.nextID > maxStreamID {
		c.loadChangedLocked()
		c.mu.Unlock()
		return nil, true, fmt.Errorf("hbone: CONNECT %s via %s: connection is closing", req.Authority, req.Addr)
	}
	id := c.nextID
	c.nextID += 2
	s = c.newStreamLocked(id)
	s.respCh = make(chan struct{})
	c.writeHeadersLocked(id, false, fields)
	c.mu.Unlock()

	select {
	case <-s.respCh:
	case <-ctx.Done():
		c.mu.Lock()
		c.resetLocked(s, http2.ErrCodeCancel, ctx.Err())
		c.mu.Unlock()
		s.Close()
		return nil, false, fmt.Errorf("hbone: CONNECT %s via %s: %w", req.Authority, req.Addr, ctx.Err())
	}
	c.mu.Lock()
	status, serr := s.status, s.resetErr
	c.mu.Unlock()
	switch {
	case status == http.StatusOK:
		return s, false, nil
	case status != 0:
		s.Close()
		return nil, false, &StatusError{Code: status, Addr: req.Addr, Authority: req.Authority}
	}
	s.Close()
	var re *retryableError
	if errors.As(serr, &re) {
		// Refused streams are always safe to retry; a dead connection
		// only if it was a reused one (not its first stream).
		retry = !errors.Is(serr, errConnDied) || id > 1
		serr = re.err
	}
	return nil, retry, fmt.Errorf("hbone: CONNECT %s via %s: %w", req.Authority, req.Addr, serr)
}

// errConnDied is wrapped by stream errors caused by the connection ending.
var errConnDied = errors.New("connection ended")

func (cc *clientConn) headers(f *http2.MetaHeadersFrame) error {
	c := cc.c
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.streams[f.StreamID]
	if s == nil {
		if c.idleStreamLocked(f.StreamID) {
			return connErr(http2.ErrCodeProtocol, "%s sent HEADERS on stream %d, which was never opened", c.remote, f.StreamID)
		}
		return nil
	}
	if s.respDone {
		// Trailers may only end the stream.
		if !f.StreamEnded() || f.Truncated {
			c.resetLocked(s, http2.ErrCodeProtocol, fmt.Errorf("%w: HEADERS in the middle of a tunnel", ErrStreamReset))
			return nil
		}
		s.recvEOF = true
		wake(s.readWake)
		c.maybeDetachLocked(s)
		return nil
	}
	status, err := strconv.Atoi(f.PseudoValue("status"))
	if err != nil || status < 100 || status > 999 || f.Truncated {
		c.resetLocked(s, http2.ErrCodeProtocol, fmt.Errorf("%w: malformed response from %s", ErrStreamReset, c.remote))
		return nil
	}
	if status < 200 {
		if f.StreamEnded() {
			c.resetLocked(s, http2.ErrCodeProtocol, fmt.Errorf("%w: interim response ended the stream", ErrStreamReset))
		}
		return nil // 1xx: wait for the final answer
	}
	s.status = status
	s.respDone = true
	close(s.respCh)
	if f.StreamEnded() {
		s.recvEOF = true
		c.maybeDetachLocked(s)
	}
	return nil
}

func (cc *clientConn) idle() {
	p := cc.pool
	c := cc.c
	p.mu.Lock()
	defer p.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idleExpiredLocked() {
		p.removeLocked(cc)
		c.closeGracefullyLocked(fmt.Errorf("%w: idle for %v", errDrained, c.idleTimeout))
	}
}

func (cc *clientConn) closed() {
	cc.pool.mu.Lock()
	cc.pool.removeLocked(cc)
	cc.pool.mu.Unlock()
}
