package listener

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

// Meta describes an accepted connection.
type Meta struct {
	// SourceIdentity is the client's verified SPIFFE ID ("" for plaintext)
	// and SourceNamespace the namespace in it.
	SourceIdentity, SourceNamespace string
	// SourceAddr is the client's address ("ip:port"), if known.
	SourceAddr string
	// Service is the destination Service key ("<ns>/<hostname>") and Port
	// its port.
	Service string
	Port    uint32
	// Workload is set instead of Service for traffic addressed to a pod
	// (waypoint-for workload|all): the Workload key ("<ns>/<pod>"); Port
	// is then the pod's port.
	Workload string
	// Protocol is the port's declared protocol.
	Protocol warrenv1.Protocol
	// Traceparent and Baggage are the W3C trace context the tunnel
	// carried (the HBONE CONNECT's headers), if any: an HTTP request
	// without its own traceparent continues this trace, and opaque TCP
	// passes it on to the upstream tunnel.
	Traceparent, Baggage string
}

type metaKey struct{}

// WithMeta returns ctx carrying m.
func WithMeta(ctx context.Context, m *Meta) context.Context {
	return context.WithValue(ctx, metaKey{}, m)
}

// MetaFrom returns the Meta of the connection a request arrived on.
func MetaFrom(ctx context.Context) (*Meta, bool) {
	m, ok := ctx.Value(metaKey{}).(*Meta)
	return m, ok
}

// Handler serves what the listener accepts.
type Handler interface {
	// ServeHTTP serves one request; MetaFrom(r.Context()) describes its
	// connection.
	ServeHTTP(w http.ResponseWriter, r *http.Request)
	// ServeTCP passes an opaque connection through; it owns c.
	ServeTCP(ctx context.Context, m *Meta, c net.Conn)
}

// Options tune a Server. Zero values take the defaults.
type Options struct {
	// ReadHeaderTimeout bounds reading a request's headers (slowloris);
	// default 10s.
	ReadHeaderTimeout time.Duration
	// MaxHeaderBytes bounds a request's header block (431 beyond); default
	// 64 KiB.
	MaxHeaderBytes int
	// IdleTimeout closes keep-alive connections idle this long; default 5m.
	IdleTimeout time.Duration
	// SniffTimeout is how long PROTOCOL_UNSPECIFIED waits for the client's
	// first bytes before treating the connection as TCP; default 1s.
	SniffTimeout time.Duration
	// MaxConcurrentStreams per HTTP/2 connection; default 250.
	MaxConcurrentStreams int
	// ErrorLog receives net/http's connection errors; default discarded.
	ErrorLog *log.Logger
}

// Server serves connections for a Handler.
type Server struct {
	h    Handler
	opts Options
	srv  *http.Server
	ln   *chanListener
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// New returns a Server; Close stops it.
func New(h Handler, o Options) *Server {
	if o.ReadHeaderTimeout == 0 {
		o.ReadHeaderTimeout = 10 * time.Second
	}
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = 64 << 10
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.SniffTimeout == 0 {
		o.SniffTimeout = time.Second
	}
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = 250
	}
	if o.ErrorLog == nil {
		o.ErrorLog = log.New(io.Discard, "", 0)
	}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	s := &Server{h: h, opts: o, ln: newChanListener()}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.srv = &http.Server{
		Handler:           h,
		Protocols:         p,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ErrorLog:          o.ErrorLog,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          o.MaxConcurrentStreams,
			MaxReceiveBufferPerStream:     1 << 20,
			MaxReceiveBufferPerConnection: 4 << 20,
		},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*trackedConn); ok {
				return WithMeta(ctx, tc.meta)
			}
			return ctx
		},
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.srv.Serve(s.ln)
	}()
	return s
}

// ServeConn serves one connection described by m and returns when it is
// done (closed by either side, or the Server closed).
func (s *Server) ServeConn(c net.Conn, m Meta) {
	proto := m.Protocol
	if proto == warrenv1.Protocol_PROTOCOL_UNSPECIFIED {
		var err error
		proto, c, err = s.sniff(c)
		if err != nil {
			_ = c.Close()
			return
		}
	}
	if proto == warrenv1.Protocol_TCP {
		s.h.ServeTCP(s.ctx, &m, c)
		return
	}
	tc := &trackedConn{Conn: c, meta: &m, done: make(chan struct{})}
	if !s.ln.push(tc) {
		_ = c.Close()
		return
	}
	select {
	case <-tc.done:
	case <-s.ctx.Done():
		_ = tc.Close()
	}
}

// Serve accepts connections from ln until it fails or the Server is
// closed, serving each with the Meta that meta returns.
func (s *Server) Serve(ln net.Listener, meta func(net.Conn) Meta) error {
	go func() {
		<-s.ctx.Done()
		_ = ln.Close()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		go s.ServeConn(c, meta(c))
	}
}

// Shutdown stops accepting, lets in-flight HTTP requests finish until ctx
// ends, then closes everything.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.stop()
	s.ln.close()
	s.wg.Wait()
	return err
}

// Close closes every connection now.
func (s *Server) Close() error {
	s.stop()
	err := s.srv.Close()
	s.ln.close()
	s.wg.Wait()
	return err
}

// h2Preface is the HTTP/2 client connection preface.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

var methods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
	"PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "MKCALENDAR", "SEARCH", "PURGE"}

// Classify decides the protocol from a connection's first bytes: HTTP
// (HTTP/1.x request line or h2c preface), TCP, or PROTOCOL_UNSPECIFIED
// when more bytes are needed to tell.
func Classify(b []byte) warrenv1.Protocol {
	if len(b) == 0 {
		return warrenv1.Protocol_PROTOCOL_UNSPECIFIED
	}
	if n := min(len(b), len(h2Preface)); string(b[:n]) == h2Preface[:n] {
		if n == len(h2Preface) {
			return warrenv1.Protocol_HTTP2
		}
		// "P" could still be POST/PUT/PATCH/PROPFIND: keep checking methods.
	}
	undecided := false
	for _, m := range methods {
		tok := m + " "
		n := min(len(b), len(tok))
		if string(b[:n]) == tok[:n] {
			if n == len(tok) {
				return warrenv1.Protocol_HTTP
			}
			undecided = true
		}
	}
	if n := min(len(b), len(h2Preface)); string(b[:n]) == h2Preface[:n] {
		undecided = true
	}
	if undecided {
		return warrenv1.Protocol_PROTOCOL_UNSPECIFIED
	}
	return warrenv1.Protocol_TCP
}

// sniff reads the first bytes of c to classify it and returns a conn that
// replays them.
func (s *Server) sniff(c net.Conn) (warrenv1.Protocol, net.Conn, error) {
	buf := make([]byte, 0, len(h2Preface))
	_ = c.SetReadDeadline(time.Now().Add(s.opts.SniffTimeout))
	proto := warrenv1.Protocol_PROTOCOL_UNSPECIFIED
	for proto == warrenv1.Protocol_PROTOCOL_UNSPECIFIED && len(buf) < cap(buf) {
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 {
			proto = Classify(buf)
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Silence (a server-first protocol) or a partial token: TCP.
				proto = warrenv1.Protocol_TCP
				break
			}
			if len(buf) == 0 {
				return 0, c, err
			}
			proto = warrenv1.Protocol_TCP
			break
		}
	}
	if proto == warrenv1.Protocol_PROTOCOL_UNSPECIFIED {
		proto = warrenv1.Protocol_TCP
	}
	_ = c.SetReadDeadline(time.Time{})
	return proto, &prefixConn{Conn: c, prefix: buf}, nil
}

// prefixConn replays sniffed bytes before reading from the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// CloseWrite half-closes when the underlying connection can.
func (p *prefixConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// trackedConn tells ServeConn when net/http is done with a connection.
type trackedConn struct {
	net.Conn
	meta *Meta
	once sync.Once
	done chan struct{}
}

func (t *trackedConn) Close() error {
	err := t.Conn.Close()
	t.once.Do(func() { close(t.done) })
	return err
}

// chanListener feeds connections to http.Server.Serve.
type chanListener struct {
	ch     chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) close() { l.once.Do(func() { close(l.closed) }) }

func (l *chanListener) Close() error { l.close(); return nil }

func (l *chanListener) Addr() net.Addr { return chanAddr{} }

type chanAddr struct{}

func (chanAddr) Network() string { return "waypoint" }
func (chanAddr) String() string  { return "waypoint" }
