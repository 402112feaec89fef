package hbone

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/warren-mesh/warren/certs"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

// staticSVID is an x509svid.Source holding one SVID.
type staticSVID struct{ svid *x509svid.SVID }

func (s staticSVID) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }

func newCA(t testing.TB, domain spiffeid.TrustDomain) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA(certs.Options{TrustDomain: domain, DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

func mustID(t testing.TB, domain spiffeid.TrustDomain, ns, sa string) spiffeid.ID {
	t.Helper()
	id, err := certs.WorkloadID(domain, ns, sa)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func svid(t testing.TB, ca *certs.CA, id spiffeid.ID) x509svid.Source {
	t.Helper()
	s, err := ca.NewSVID(id, time.Hour)
	if err != nil {
		t.Fatalf("NewSVID %s: %v", id, err)
	}
	return staticSVID{s}
}

// env is a real HBONE server on loopback with a pool dialing it, all
// certificates from one real CA.
type env struct {
	t        testing.TB
	ca       *certs.CA
	clientID spiffeid.ID
	serverID spiffeid.ID
	client   x509svid.Source
	server   x509svid.Source
	srv      *Server
	addr     netip.AddrPort
	pool     *Pool
	accepted chan struct{}
	mu       sync.Mutex
	connErrs []error // ServeConn results
	wg       sync.WaitGroup
}

type envOption func(*env, *ServerOptions, *PoolOptions)

func newEnv(t testing.TB, h Handler, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t, ca: newCA(t, td), accepted: make(chan struct{}, 1024)}
	e.clientID = mustID(t, td, "client-ns", "client")
	e.serverID = mustID(t, td, "server-ns", "server")
	e.client = svid(t, e.ca, e.clientID)
	e.server = svid(t, e.ca, e.serverID)
	so := ServerOptions{
		TLSConfig: certs.HBONEServerConfig(e.server, e.ca.Bundle(), certs.AuthorizeAny(), certs.TLSOptions{}),
		Handler:   h,
	}
	var po PoolOptions
	for _, o := range opts {
		o(e, &so, &po)
	}
	srv, err := NewServer(so)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().(*net.TCPAddr).AddrPort()
	// Our own accept loop, so the tests see what ServeConn returns.
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted <- struct{}{}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				err := srv.ServeConn(context.Background(), nc)
				e.mu.Lock()
				e.connErrs = append(e.connErrs, err)
				e.mu.Unlock()
			}()
		}
	}()
	e.pool = NewPool(po)
	t.Cleanup(func() {
		e.pool.Close()
		ln.Close()
		srv.Close()
		e.wg.Wait()
	})
	return e
}

func (e *env) req(authority netip.AddrPort) DialRequest {
	return DialRequest{Addr: e.addr, Authority: authority, Source: e.client, Bundle: e.ca.Bundle(), ServerID: e.serverID}
}

func (e *env) dial(authority netip.AddrPort) (*Stream, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return e.pool.Dial(ctx, e.req(authority))
}

func (e *env) mustDial(authority netip.AddrPort) *Stream {
	e.t.Helper()
	s, err := e.dial(authority)
	if err != nil {
		e.t.Fatalf("dial %s: %v", authority, err)
	}
	return s
}

// serveErrs returns what ServeConn returned so far.
func (e *env) serveErrs() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.connErrs...)
}

// waitServeErr waits for a ServeConn error containing substr.
func (e *env) waitServeErr(substr string) error {
	e.t.Helper()
	var errs []error
	ok := eventually(func() bool {
		errs = e.serveErrs()
		for _, err := range errs {
			if err != nil && strings.Contains(err.Error(), substr) {
				return true
			}
		}
		return false
	})
	if !ok {
		e.t.Fatalf("no ServeConn error containing %q; got %v", substr, errs)
	}
	return nil
}

// eventually polls cond for up to 10 seconds (tests catch hangs, not speed).
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

// proxy is the handler ztunnel's inbound side will be: authorize the
// peer, dial the authority, splice.
func proxy(allowed ...spiffeid.ID) Handler {
	return HandlerFunc(func(r *Request) {
		if len(allowed) > 0 && !containsID(allowed, r.Peer) {
			r.Reject(http.StatusUnauthorized)
			return
		}
		var d net.Dialer
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		app, err := d.DialContext(ctx, "tcp", r.Authority.String())
		cancel()
		if err != nil {
			r.Reject(http.StatusServiceUnavailable)
			return
		}
		s, err := r.Accept()
		if err != nil {
			app.Close()
			return
		}
		Splice(s, app)
	})
}

func containsID(ids []spiffeid.ID, id spiffeid.ID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// tcpApp runs fn for every connection accepted on a loopback listener.
func tcpApp(t testing.TB, fn func(*net.TCPConn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				fn(c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// echoApp echoes until EOF, then half-closes.
func echoApp(t testing.TB) netip.AddrPort {
	return tcpApp(t, func(c *net.TCPConn) {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				c.CloseWrite()
				io.Copy(io.Discard, c)
				return
			}
		}
	})
}

// closedPort is a loopback port nothing listens on.
func closedPort(t testing.TB) netip.AddrPort {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return ap
}

// pattern is deterministic test data.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

func digest(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

// checkGoroutines fails the test if the goroutine count does not return to
// its starting level once the test's own cleanups ran.
func checkGoroutines(t *testing.T) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		var n int
		if !eventually(func() bool { n = runtime.NumGoroutine(); return n <= base }) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutines: %d at start, %d after the test\n%s", base, n, buf)
		}
	})
}

// rawClient speaks HTTP/2 frame by frame over an HBONE TLS connection, to
// send what a well-behaved client never would.
type rawClient struct {
	t    testing.TB
	tc   *tls.Conn
	fr   *http2.Framer
	bw   *bufio.Writer
	henc *hpack.Encoder
	hbuf bytes.Buffer
	mu   sync.Mutex // writes
}

func (e *env) rawDial() *rawClient {
	e.t.Helper()
	cfg := certs.HBONEClientConfig(e.client, e.ca.Bundle(), e.serverID, certs.TLSOptions{})
	d := tls.Dialer{Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", e.addr.String())
	if err != nil {
		e.t.Fatalf("raw dial: %v", err)
	}
	rc := &rawClient{t: e.t, tc: nc.(*tls.Conn)}
	rc.bw = bufio.NewWriterSize(rc.tc, 64<<10)
	rc.fr = http2.NewFramer(rc.bw, rc.tc)
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.fr.SetMaxReadFrameSize(1 << 20)
	rc.henc = hpack.NewEncoder(&rc.hbuf)
	e.t.Cleanup(func() { rc.tc.Close() })
	rc.bw.WriteString(http2.ClientPreface)
	rc.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	rc.flush()
	return rc
}

func (rc *rawClient) flush() {
	if err := rc.bw.Flush(); err != nil {
		rc.t.Logf("raw client flush: %v", err)
	}
}

// block encodes name/value pairs.
func (rc *rawClient) block(kv ...string) []byte {
	rc.hbuf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		rc.henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return append([]byte(nil), rc.hbuf.Bytes()...)
}

// headers sends a complete HEADERS frame (no flush).
func (rc *rawClient) headers(id uint32, end bool, kv ...string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: rc.block(kv...), EndStream: end, EndHeaders: true})
}

// next reads frames until one satisfies match, skipping others; it fails
// on timeout. A nil frame with a non-nil error means the connection ended.
func (rc *rawClient) next(match func(http2.Frame) bool) (http2.Frame, error) {
	rc.tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := rc.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				rc.t.Fatalf("raw client: timed out waiting for a frame")
			}
			return nil, err
		}
		if match(f) {
			return f, nil
		}
	}
}

// status waits for the response status on stream id.
func (rc *rawClient) status(id uint32) int {
	rc.t.Helper()
	f, err := rc.next(func(f http2.Frame) bool {
		h, ok := f.(*http2.MetaHeadersFrame)
		return ok && h.StreamID == id
	})
	if err != nil {
		rc.t.Fatalf("waiting for the response on stream %d: %v", id, err)
	}
	var code int
	fmt.Sscan(f.(*http2.MetaHeadersFrame).PseudoValue("status"), &code)
	return code
}

// goAway reads until GOAWAY (returning its code) or the end of the
// connection (ok false).
func (rc *rawClient) goAway() (http2.ErrCode, bool) {
	f, err := rc.next(func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok })
	if err != nil {
		return 0, false
	}
	return f.(*http2.GoAwayFrame).ErrCode, true
}

// certsLessClient offers TLS 1.3 and h2 but no client certificate.
func certsLessClient() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}, InsecureSkipVerify: true}
}

func tlsDial(addr netip.AddrPort, cfg *tls.Config) (*tls.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*tls.Conn), nil
}
