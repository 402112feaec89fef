package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Endpoint is one destination the waypoint can send a request to.
type Endpoint struct {
	// Addr is "ip:port" of the application (the target port).
	Addr string
	// Workload is the Workload resource name ("<namespace>/<pod>"), empty
	// for endpoints outside the mesh.
	Workload string
	// Identity is the SPIFFE ID the endpoint runs as.
	Identity string
	// HBONE is true when the endpoint is reached through an HBONE tunnel
	// (it is enrolled in the mesh); false means plain TCP.
	HBONE bool
}

// Dialer opens a byte stream to an endpoint. The HBONE pool of
// ztunnel/hbone implements it for mesh endpoints; TCPDialer for plain ones.
type Dialer interface {
	Dial(ctx context.Context, ep Endpoint) (net.Conn, error)
}

// TCPDialer dials Endpoint.Addr over plain TCP, whatever Endpoint.HBONE
// says: for tests, benchmarks and out-of-mesh backends. Production wiring
// chooses by Endpoint.HBONE (see ByTunnel).
type TCPDialer struct {
	// Timeout bounds the connect; default 5s.
	Timeout time.Duration
}

var _ Dialer = TCPDialer{}

// Dial implements Dialer.
func (d TCPDialer) Dial(ctx context.Context, ep Endpoint) (net.Conn, error) {
	to := d.Timeout
	if to == 0 {
		to = 5 * time.Second
	}
	nd := net.Dialer{Timeout: to, KeepAlive: 30 * time.Second}
	c, err := nd.DialContext(ctx, "tcp", ep.Addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return c, nil
}

// ByTunnel sends HBONE endpoints to HBONE and the others to Plain.
type ByTunnel struct {
	HBONE Dialer
	Plain Dialer
}

var _ Dialer = ByTunnel{}

// Dial implements Dialer.
func (b ByTunnel) Dial(ctx context.Context, ep Endpoint) (net.Conn, error) {
	d := b.Plain
	if ep.HBONE {
		d = b.HBONE
	}
	if d == nil {
		return nil, fmt.Errorf("waypoint: upstream %s: no dialer for this tunnel type", ep.Addr)
	}
	return d.Dial(ctx, ep)
}

// ConnectError reports that no connection to the endpoint could be made:
// the request never reached it, so it is safe to retry and it counts
// toward outlier ejection.
type ConnectError struct {
	Endpoint Endpoint
	Err      error
}

func (e *ConnectError) Error() string {
	return fmt.Sprintf("waypoint: upstream connect %s: %v", e.Endpoint.Addr, e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// IsConnectError reports whether err (or what it wraps) is a ConnectError.
func IsConnectError(err error) bool {
	var ce *ConnectError
	return errors.As(err, &ce)
}

// Protocol is the HTTP version spoken to an endpoint.
type Protocol uint8

const (
	// HTTP1 is HTTP/1.1 with keep-alive.
	HTTP1 Protocol = iota
	// H2C is HTTP/2 over cleartext with prior knowledge (gRPC, h2c).
	H2C
)

func (p Protocol) String() string {
	if p == H2C {
		return "h2c"
	}
	return "http/1.1"
}

// Options tune a Client. Zero values take the defaults.
type Options struct {
	// MaxIdlePerEndpoint caps idle HTTP/1.1 connections kept per
	// endpoint; default 1024.
	MaxIdlePerEndpoint int
	// IdleTimeout closes idle connections; default 90s.
	IdleTimeout time.Duration
}

// Client sends requests to endpoints over pooled connections made by a
// Dialer. It is safe for concurrent use.
type Client struct {
	dialer Dialer
	h1, h2 *http.Transport
}

type epKey struct{}

type traceKey struct{}

// WithTraceparent returns ctx carrying the W3C traceparent of the request
// an upstream attempt belongs to. The connection a Client dials for that
// attempt sees it in its Dial context, so a tunnelling Dialer can send it
// on the CONNECT it opens (pooled connections carry the trace of the
// request that opened them).
func WithTraceparent(ctx context.Context, tp string) context.Context {
	if tp == "" {
		return ctx
	}
	return context.WithValue(ctx, traceKey{}, tp)
}

// TraceparentFrom returns what WithTraceparent stored, or "".
func TraceparentFrom(ctx context.Context) string {
	tp, _ := ctx.Value(traceKey{}).(string)
	return tp
}

// New returns a Client dialing through d.
func New(d Dialer, o Options) *Client {
	if o.MaxIdlePerEndpoint == 0 {
		o.MaxIdlePerEndpoint = 1024
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 90 * time.Second
	}
	c := &Client{dialer: d}
	dial := func(ctx context.Context, _, addr string) (net.Conn, error) {
		ep, ok := ctx.Value(epKey{}).(Endpoint)
		if !ok || ep.Addr != addr {
			ep = Endpoint{Addr: addr}
		}
		conn, err := d.Dial(ctx, ep)
		if err != nil {
			return nil, &ConnectError{Endpoint: ep, Err: err}
		}
		return conn, nil
	}
	mk := func(h2 bool) *http.Transport {
		p := new(http.Protocols)
		if h2 {
			p.SetUnencryptedHTTP2(true)
		} else {
			p.SetHTTP1(true)
		}
		return &http.Transport{
			Proxy:                  nil,
			DialContext:            dial,
			Protocols:              p,
			DisableCompression:     true,
			MaxIdleConns:           0,
			MaxIdleConnsPerHost:    o.MaxIdlePerEndpoint,
			IdleConnTimeout:        o.IdleTimeout,
			ExpectContinueTimeout:  0,
			MaxResponseHeaderBytes: 1 << 20,
			WriteBufferSize:        32 << 10,
			ReadBufferSize:         32 << 10,
			HTTP2: &http.HTTP2Config{
				MaxReceiveBufferPerStream:     4 << 20,
				MaxReceiveBufferPerConnection: 16 << 20,
			},
		}
	}
	c.h1, c.h2 = mk(false), mk(true)
	return c
}

// RoundTrip sends req to ep. req.Host is kept as the authority; req.URL is
// rewritten to address the endpoint. The caller owns closing resp.Body.
// A failure to connect is a *ConnectError.
func (c *Client) RoundTrip(req *http.Request, ep Endpoint, p Protocol) (*http.Response, error) {
	u := *req.URL
	u.Scheme, u.Host = "http", ep.Addr
	out := req.WithContext(context.WithValue(req.Context(), epKey{}, ep))
	out.URL = &u
	t := c.h1
	if p == H2C {
		t = c.h2
	}
	resp, err := t.RoundTrip(out)
	if err != nil {
		if IsConnectError(err) {
			return nil, err
		}
		return nil, fmt.Errorf("waypoint: upstream %s: %w", ep.Addr, err)
	}
	return resp, nil
}

// CloseIdle closes idle pooled connections.
func (c *Client) CloseIdle() {
	c.h1.CloseIdleConnections()
	c.h2.CloseIdleConnections()
}

// Close closes idle connections; connections in use close when their
// requests finish.
func (c *Client) Close() error {
	c.CloseIdle()
	return nil
}

// URLFor is a helper for building a request URL for an endpoint (tests,
// mirrors): path and query come from u.
func URLFor(ep Endpoint, u *url.URL) *url.URL {
	v := *u
	v.Scheme, v.Host = "http", ep.Addr
	return &v
}

// Drain reads and closes a body so its connection can be reused.
func Drain(rc io.ReadCloser) {
	if rc == nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, 256<<10))
	_ = rc.Close()
}
