package hbone

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/warren-mesh/warren/certs"
)

func TestRoundTrip(t *testing.T) {
	checkGoroutines(t)
	app := echoApp(t)
	seen := make(chan *Request, 1)
	e := newEnv(t, HandlerFunc(func(r *Request) {
		seen <- r
		proxy().ServeHBONE(r)
	}))
	req := e.req(app)
	req.ForwardedFor = netip.MustParseAddr("10.1.2.3")
	req.Header = http.Header{
		"Baggage":     {"k8s.namespace.name=client-ns"},
		"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
	}
	s, err := e.pool.Dial(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	r := <-seen
	if r.Authority != app {
		t.Errorf("authority %v, want %v", r.Authority, app)
	}
	if r.Peer != e.clientID {
		t.Errorf("peer %v, want %v", r.Peer, e.clientID)
	}
	if got, ok := r.ForwardedFor(); !ok || got != req.ForwardedFor {
		t.Errorf("ForwardedFor = %v %v, want %v (header %q)", got, ok, req.ForwardedFor, r.Header.Get("Forwarded"))
	}
	for k, v := range req.Header {
		if r.Header.Get(k) != v[0] {
			t.Errorf("header %s = %q, want %q", k, r.Header.Get(k), v[0])
		}
	}
	if s.Peer() != e.serverID {
		t.Errorf("stream peer %v, want %v", s.Peer(), e.serverID)
	}

	msg := []byte("hello through hbone")
	if _, err := s.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo %q, want %q", got, msg)
	}
	if st := e.pool.Stats(); st.Connections != 1 || st.Streams != 1 {
		t.Errorf("pool stats %+v, want 1 connection, 1 stream", st)
	}
	// A graceful end: half-close, read the echo's EOF, close.
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, s); err != nil || n != 0 {
		t.Fatalf("after CloseWrite: read %d bytes, %v; want 0, EOF", n, err)
	}
	s.Close()
	if !eventually(func() bool { return e.pool.Stats().Streams == 0 && e.srv.Stats().Streams == 0 }) {
		t.Errorf("streams left: pool %+v server %+v", e.pool.Stats(), e.srv.Stats())
	}
}

// TestHalfCloseClientToServer: the client ends its side; the app reads to
// EOF and only then answers, which the client still receives.
func TestHalfCloseClientToServer(t *testing.T) {
	checkGoroutines(t)
	app := tcpApp(t, func(c *net.TCPConn) {
		b, err := io.ReadAll(c) // until the FIN relayed from END_STREAM
		if err != nil {
			return
		}
		c.Write([]byte(digest(b)))
		c.CloseWrite()
	})
	e := newEnv(t, proxy())
	s := e.mustDial(app)
	defer s.Close()
	data := pattern(10 << 20) // beyond both flow-control windows
	if _, err := s.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("x")); err == nil {
		t.Error("Write after CloseWrite succeeded")
	}
	reply, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("reading the reply after half-close: %v", err)
	}
	if string(reply) != digest(data) {
		t.Fatalf("app saw different data: %q, want %q", reply, digest(data))
	}
}

// TestHalfCloseServerToClient: the app answers and closes its write side at
// once while the client is still sending; nothing the client sends after
// it saw EOF may be lost.
func TestHalfCloseServerToClient(t *testing.T) {
	checkGoroutines(t)
	report := make(chan string, 1)
	app := tcpApp(t, func(c *net.TCPConn) {
		c.Write([]byte("greeting"))
		c.CloseWrite() // FIN while the client keeps sending
		b, err := io.ReadAll(c)
		if err != nil {
			report <- "error: " + err.Error()
			return
		}
		report <- digest(b)
	})
	e := newEnv(t, proxy())
	s := e.mustDial(app)
	defer s.Close()
	first := pattern(1 << 20)
	if _, err := s.Write(first); err != nil {
		t.Fatal(err)
	}
	greeting, err := io.ReadAll(s)
	if err != nil || string(greeting) != "greeting" {
		t.Fatalf("read %q, %v; want greeting then EOF", greeting, err)
	}
	if _, err := s.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after EOF: %v, want io.EOF again", err)
	}
	rest := pattern(9 << 20)
	if _, err := s.Write(rest); err != nil {
		t.Fatalf("write after the peer's END_STREAM: %v", err)
	}
	if err := s.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	want := digest(append(first, rest...))
	select {
	case got := <-report:
		if got != want {
			t.Fatalf("app received %s, want %s", got, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("app never saw EOF")
	}
}

// TestHalfCloseStreamLevel drives both directions at the Stream API on the
// server side too: the handler ends its direction first and keeps reading.
func TestHalfCloseStreamLevel(t *testing.T) {
	checkGoroutines(t)
	got := make(chan string, 1)
	e := newEnv(t, HandlerFunc(func(r *Request) {
		s, err := r.Accept()
		if err != nil {
			return
		}
		s.Write([]byte("bye"))
		s.CloseWrite()
		b, err := io.ReadAll(s)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- digest(b)
	}))
	s := e.mustDial(netip.MustParseAddrPort("127.0.0.1:9"))
	defer s.Close()
	b, err := io.ReadAll(s)
	if err != nil || string(b) != "bye" {
		t.Fatalf("read %q, %v", b, err)
	}
	data := pattern(6 << 20)
	if _, err := s.Write(data); err != nil {
		t.Fatal(err)
	}
	s.CloseWrite()
	if r := <-got; r != digest(data) {
		t.Fatalf("handler read %s, want %s", r, digest(data))
	}
}

// TestBidirectionalBulk sends 32 MiB both ways at once over one stream and
// several streams at once over one connection: windows and credit must
// never deadlock.
func TestBidirectionalBulk(t *testing.T) {
	checkGoroutines(t)
	app := echoApp(t)
	e := newEnv(t, proxy())
	const streams = 8
	size := 32 << 20
	if testing.Short() {
		size = 4 << 20
	}
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := 0; i < streams; i++ {
		n := size / streams
		if i == 0 {
			n = size
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := e.dial(app)
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			data := pattern(n)
			go func() {
				s.Write(data)
				s.CloseWrite()
			}()
			back, err := io.ReadAll(s)
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(back, data) {
				errs <- errors.New("echo differs")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := e.pool.Stats(); st.Connections != 1 {
		t.Errorf("pool used %d connections for %d streams", st.Connections, streams)
	}
}

func TestStatusCodes(t *testing.T) {
	checkGoroutines(t)
	app := echoApp(t)
	e := newEnv(t, proxy())

	t.Run("401 deny", func(t *testing.T) {
		deny := newEnv(t, proxy(mustID(t, td, "other", "sa")))
		_, err := deny.dial(app)
		var se *StatusError
		if !errors.As(err, &se) || se.Code != http.StatusUnauthorized {
			t.Fatalf("got %v, want a 401 StatusError", err)
		}
		if !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), app.String()) {
			t.Errorf("error %q should name the status and the authority", err)
		}
	})
	t.Run("503 unreachable", func(t *testing.T) {
		_, err := e.dial(closedPort(t))
		var se *StatusError
		if !errors.As(err, &se) || se.Code != http.StatusServiceUnavailable {
			t.Fatalf("got %v, want a 503 StatusError", err)
		}
		// The connection survives a rejected stream.
		s := e.mustDial(app)
		s.Close()
		if st := e.pool.Stats(); st.Connections != 1 {
			t.Errorf("pool %+v, want the one connection kept", st)
		}
	})

	rc := e.rawDial()
	cases := []struct {
		name string
		kv   []string
		want int
	}{
		{"GET", []string{":method", "GET", ":scheme", "https", ":path", "/", ":authority", app.String()}, 405},
		{"POST without path", []string{":method", "POST", ":authority", app.String()}, 405},
		{"host name", []string{":method", "CONNECT", ":authority", "example.com:80"}, 400},
		{"no port", []string{":method", "CONNECT", ":authority", "127.0.0.1"}, 400},
		{"port 0", []string{":method", "CONNECT", ":authority", "127.0.0.1:0"}, 400},
		{"port too big", []string{":method", "CONNECT", ":authority", "127.0.0.1:65536"}, 400},
		{"zone", []string{":method", "CONNECT", ":authority", "[fe80::1%eth0]:80"}, 400},
		{"unspecified", []string{":method", "CONNECT", ":authority", "0.0.0.0:80"}, 400},
		{"no authority", []string{":method", "CONNECT"}, 400},
		{"CONNECT with path", []string{":method", "CONNECT", ":authority", app.String(), ":scheme", "https", ":path", "/"}, 400},
		{"extended CONNECT", []string{":method", "CONNECT", ":protocol", "websocket", ":authority", app.String()}, 400},
		{"connection header", []string{":method", "CONNECT", ":authority", app.String(), "connection", "close"}, 400},
		{"no method", []string{":authority", app.String()}, 400},
	}
	id := uint32(1)
	for _, c := range cases {
		rc.headers(id, false, c.kv...)
		rc.flush()
		if got := rc.status(id); got != c.want {
			t.Errorf("%s: status %d, want %d", c.name, got, c.want)
		}
		id += 2
	}
	// The same connection still tunnels.
	rc.headers(id, false, ":method", "CONNECT", ":authority", app.String())
	rc.flush()
	if got := rc.status(id); got != 200 {
		t.Errorf("valid CONNECT after the bad ones: %d", got)
	}
}

func TestTLSFailures(t *testing.T) {
	checkGoroutines(t)
	app := echoApp(t)

	t.Run("no client certificate", func(t *testing.T) {
		e := newEnv(t, proxy())
		// A client that offers h2 and TLS 1.3 but no certificate.
		cfg := certsLessClient()
		c, err := tlsDial(e.addr, cfg)
		if err == nil {
			_, err = c.Read(make([]byte, 1)) // TLS 1.3: the alert arrives after the handshake
			c.Close()
		}
		if err == nil {
			t.Fatal("server accepted a client without a certificate")
		}
		e.waitServeErr("certificate")
	})
	t.Run("wrong trust domain", func(t *testing.T) {
		e := newEnv(t, proxy())
		other := spiffeid.RequireTrustDomainFromString("other.local")
		oca := newCA(t, other)
		req := e.req(app)
		req.Source = svid(t, oca, mustID(t, other, "client-ns", "client"))
		_, err := e.pool.Dial(context.Background(), req)
		if err == nil {
			t.Fatal("dial with a foreign trust domain succeeded")
		}
		e.waitServeErr(`trust domain "other.local"`)
		if st := e.pool.Stats(); st.Connections != 0 {
			t.Errorf("pool kept a failed connection: %+v", st)
		}
		if n := len(e.accepted); n != 1 {
			t.Errorf("%d handshakes for one refused dial; a fresh connection that dies is not retried", n)
		}
	})
	t.Run("untrusted root, same trust domain", func(t *testing.T) {
		e := newEnv(t, proxy())
		req := e.req(app)
		req.Source = svid(t, newCA(t, td), e.clientID)
		if _, err := e.pool.Dial(context.Background(), req); err == nil {
			t.Fatal("dial with a certificate from another CA succeeded")
		}
		e.waitServeErr("does not verify")
	})
	t.Run("server identity mismatch", func(t *testing.T) {
		e := newEnv(t, proxy())
		req := e.req(app)
		req.ServerID = mustID(t, td, "server-ns", "impostor-expected")
		_, err := e.pool.Dial(context.Background(), req)
		if err == nil || !strings.Contains(err.Error(), "identity mismatch") {
			t.Fatalf("got %v, want an identity mismatch", err)
		}
		if st := e.pool.Stats(); st.Connections != 0 || st.Dialing != 0 {
			t.Errorf("pool kept a failed connection: %+v", st)
		}
	})
	t.Run("client not authorized by the server", func(t *testing.T) {
		e := newEnv(t, proxy(), func(e *env, so *ServerOptions, _ *PoolOptions) {
			so.TLSConfig = certs.HBONEServerConfig(e.server, e.ca.Bundle(), certs.AuthorizeID(mustID(t, td, "only", "this")), certs.TLSOptions{})
		})
		if _, err := e.dial(app); err == nil {
			t.Fatal("dial by an unauthorized client succeeded")
		}
		e.waitServeErr("not authorized")
	})
}

// TestPooling: streams share a connection up to the cap, concurrent dials
// never open more connections than the cap requires, identities split the
// pool.
func TestPooling(t *testing.T) {
	checkGoroutines(t)
	app := echoApp(t)
	e := newEnv(t, proxy(), func(_ *env, _ *ServerOptions, po *PoolOptions) { po.MaxStreamsPerConn = 4 })

	var held []*Stream
	for i := 0; i < 4; i++ {
		held = append(held, e.mustDial(app))
	}
	if st := e.pool.Stats(); st.Connections != 1 || st.Streams != 4 {
		t.Fatalf("4 streams at cap 4: %+v, want 1 connection", st)
	}
	held = append(held, e.mustDial(app))
	if st := e.pool.Stats(); st.Connections != 2 || st.Streams != 5 {
		t.Fatalf("5 streams at cap 4: %+v, want 2 connections", st)
	}
	if st := e.srv.Stats(); st.Connections != 2 || st.Streams != 5 {
		t.Errorf("server sees %+v", st)
	}
	for _, s := range held {
		s.Close()
	}
	if !eventually(func() bool { return e.pool.Stats().Streams == 0 }) {
		t.Fatalf("streams not released: %+v", e.pool.Stats())
	}
	// Freed slots are reused: no third connection.
	s := e.mustDial(app)
	s.Close()
	if st := e.pool.Stats(); st.Connections != 2 {
		t.Errorf("after release: %+v, want the 2 connections reused", st)
	}

	// 10 dials at once on a fresh key need exactly ceil(10/4) connections.
	other := mustID(t, td, "client-ns", "second")
	req := e.req(app)
	req.Source = svid(t, e.ca, other)
	var wg sync.WaitGroup
	streams := make(chan *Stream, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := e.pool.Dial(context.Background(), req)
			if err != nil {
				t.Error(err)
				return
			}
			streams <- s
		}()
	}
	wg.Wait()
	close(streams)
	if st := e.pool.Stats(); st.Connections != 2+3 || st.Streams != 10 {
		t.Errorf("10 concurrent dials for a second identity: %+v, want 3 more connections", st)
	}
	for s := range streams {
		if s.LocalAddr() == nil || s.RemoteAddr().String() != e.addr.String() {
			t.Errorf("stream addresses %v -> %v", s.LocalAddr(), s.RemoteAddr())
		}
		s.Close()
	}
}

// TestServerStreamLimitBelowPoolCap: the server's
// SETTINGS_MAX_CONCURRENT_STREAMS wins over the pool's cap; refused
// streams are retried on a new connection.
func TestServerStreamLimitBelowPoolCap(t *testing.T) {
	checkGoroutines(t)
	app := echoApp(t)
	e := newEnv(t, proxy(), func(_ *env, so *ServerOptions, _ *PoolOptions) { so.MaxConcurrentStreams = 2 })
	first := e.mustDial(app) // the pool learns the limit
	defer first.Close()
	var held []*Stream
	for i := 0; i < 5; i++ {
		held = append(held, e.mustDial(app))
	}
	if st := e.pool.Stats(); st.Connections != 3 || st.Streams != 6 {
		t.Errorf("6 streams at a server limit of 2: %+v, want 3 connections", st)
	}
	for _, s := range held {
		s.Close()
	}
}

func TestIdleTimeouts(t *testing.T) {
	checkGoroutines(t)
	app := echoApp(t)
	t.Run("pool", func(t *testing.T) {
		e := newEnv(t, proxy(), func(_ *env, _ *ServerOptions, po *PoolOptions) { po.IdleTimeout = 50 * time.Millisecond })
		s := e.mustDial(app)
		time.Sleep(150 * time.Millisecond) // busy connections stay
		if st := e.pool.Stats(); st.Connections != 1 {
			t.Fatalf("a connection with an open stream was closed: %+v", st)
		}
		s.Close()
		if !eventually(func() bool { return e.pool.Stats().Connections == 0 && e.srv.Stats().Connections == 0 }) {
			t.Fatalf("idle connection not closed: pool %+v, server %+v", e.pool.Stats(), e.srv.Stats())
		}
		for _, err := range e.serveErrs() {
			if err != nil {
				t.Errorf("ServeConn after a client idle close: %v", err)
			}
		}
	})
	t.Run("server", func(t *testing.T) {
		e := newEnv(t, proxy(), func(_ *env, so *ServerOptions, po *PoolOptions) {
			so.IdleTimeout = 50 * time.Millisecond
			po.IdleTimeout = -1
		})
		e.mustDial(app).Close()
		if !eventually(func() bool { return e.pool.Stats().Connections == 0 && e.srv.Stats().Connections == 0 }) {
			t.Fatalf("server idle timeout: pool %+v, server %+v", e.pool.Stats(), e.srv.Stats())
		}
		// The GOAWAYed connection is not reused: a new one is dialed.
		e.mustDial(app).Close()
		if n := len(e.accepted); n != 2 {
			t.Errorf("accepted %d connections, want 2", n)
		}
	})
}

func TestShutdownDrains(t *testing.T) {
	checkGoroutines(t)
	app := echoApp(t)
	e := newEnv(t, proxy())
	s := e.mustDial(app)
	defer s.Close()
	if _, err := s.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- e.srv.Shutdown(ctx)
	}()
	// New streams are not opened on the draining connection.
	if !eventually(func() bool {
		_, err := e.dial(app)
		return err != nil
	}) {
		t.Fatal("dial kept succeeding during shutdown")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a stream open", err)
	case <-time.After(100 * time.Millisecond):
	}
	// The open stream still works both ways.
	if _, err := s.Write([]byte(" and after")); err != nil {
		t.Fatal(err)
	}
	s.CloseWrite()
	b, err := io.ReadAll(s)
	if err != nil || string(b) != "before and after" {
		t.Fatalf("stream during drain: %q, %v", b, err)
	}
	s.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Shutdown did not return after the last stream ended")
	}
	if !eventually(func() bool { return e.pool.Stats().Connections == 0 }) {
		t.Errorf("pool kept the drained connection: %+v", e.pool.Stats())
	}
}

func TestShutdownDeadline(t *testing.T) {
	checkGoroutines(t)
	app := echoApp(t)
	e := newEnv(t, proxy())
	s := e.mustDial(app)
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := e.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.Read(make([]byte, 1)); err == nil || err == io.EOF {
		t.Fatalf("read on a force-closed connection: %v, want an error", err)
	}
	// The failed connection leaves the pool.
	if !eventually(func() bool { return e.pool.Stats().Connections == 0 }) {
		t.Errorf("pool kept a dead connection: %+v", e.pool.Stats())
	}
}

// TestResetPropagation: an app that resets its TCP connection resets the
// stream, and the client sees an error, not a clean EOF.
func TestResetPropagation(t *testing.T) {
	checkGoroutines(t)
	app := tcpApp(t, func(c *net.TCPConn) {
		c.Read(make([]byte, 16))
		c.SetLinger(0)
		c.Close()
	})
	e := newEnv(t, proxy())
	s := e.mustDial(app)
	defer s.Close()
	s.Write([]byte("trigger"))
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(s)
	if !errors.Is(err, ErrStreamReset) {
		t.Fatalf("read after the app reset: %v, want ErrStreamReset", err)
	}
	if _, err := s.Write([]byte("more")); err == nil {
		t.Error("write on a reset stream succeeded")
	}
}

func TestDeadlinesAndClose(t *testing.T) {
	checkGoroutines(t)
	e := newEnv(t, HandlerFunc(func(r *Request) {
		s, err := r.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, s) // never writes
	}))
	s := e.mustDial(netip.MustParseAddrPort("127.0.0.1:9"))
	s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := s.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	// Clearing the deadline unblocks nothing by itself; Close does.
	s.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.SetReadDeadline(time.Now()) // moving the deadline wakes the reader
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after moving the deadline: %v", err)
	}
	go func() {
		s.SetReadDeadline(time.Time{})
		_, err := s.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read unblocked by Close: %v, want net.ErrClosed", err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
}

func TestSpliceCounts(t *testing.T) {
	checkGoroutines(t)
	app := tcpApp(t, func(c *net.TCPConn) {
		io.Copy(io.Discard, c)
		c.Write(make([]byte, 1234))
	})
	counts := make(chan [2]int64, 1)
	e := newEnv(t, HandlerFunc(func(r *Request) {
		app, err := net.Dial("tcp", r.Authority.String())
		if err != nil {
			r.Reject(503)
			return
		}
		s, err := r.Accept()
		if err != nil {
			return
		}
		in, out, err := Splice(s, app)
		if err != nil {
			t.Errorf("splice: %v", err)
		}
		counts <- [2]int64{in, out}
	}))
	s := e.mustDial(app)
	defer s.Close()
	s.Write(make([]byte, 100000))
	s.CloseWrite()
	n, err := io.Copy(io.Discard, s)
	if err != nil || n != 1234 {
		t.Fatalf("read %d, %v", n, err)
	}
	if c := <-counts; c != [2]int64{100000, 1234} {
		t.Fatalf("splice counted %v, want [100000 1234]", c)
	}
}

func TestForwardedFor(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
	}{
		{"for=10.0.0.1", "10.0.0.1"},
		{`for="[2001:db8::1]"`, "2001:db8::1"},
		{`for="[2001:db8::1]:4711"`, "2001:db8::1"},
		{"for=192.0.2.43:47011;proto=http, for=10.0.0.9", "192.0.2.43"},
		{"proto=https;For=10.0.0.2", "10.0.0.2"},
		{"for=::ffff:10.0.0.3", "10.0.0.3"},
		{"for=unknown", ""},
		{"for=_hidden", ""},
		{`for="[fe80::1%eth0]"`, ""},
		{"", ""},
	} {
		got, ok := ParseForwardedFor(c.in)
		if (c.want == "") == ok || (ok && got.String() != c.want) {
			t.Errorf("ParseForwardedFor(%q) = %v %v, want %q", c.in, got, ok, c.want)
		}
	}
	for _, a := range []string{"10.0.0.1", "2001:db8::1", "::ffff:10.0.0.4"} {
		addr := netip.MustParseAddr(a)
		got, ok := ParseForwardedFor(FormatForwardedFor(addr))
		if !ok || got != addr.Unmap() {
			t.Errorf("round trip of %s via %q: %v %v", a, FormatForwardedFor(addr), got, ok)
		}
	}
}

// TestParkedDataDoesNotStallOtherStreams: streams whose data nobody reads
// hold most of the connection window; another stream on the same
// connection must still flow.
func TestParkedDataDoesNotStallOtherStreams(t *testing.T) {
	checkGoroutines(t)
	const parked = 3900 << 10 // per stream, within its 4 MiB window
	e := newEnv(t, HandlerFunc(func(r *Request) {
		s, err := r.Accept()
		if err != nil {
			return
		}
		switch r.Authority.Port() {
		case 7001:
			s.Write(make([]byte, parked))
			<-r.Context().Done()
		case 7002:
			s.Write(pattern(10 << 20))
			s.CloseWrite()
			io.Copy(io.Discard, s)
		}
	}))
	for i := 0; i < 4; i++ { // 15.2 MiB of the 16 MiB connection window
		s := e.mustDial(netip.MustParseAddrPort("127.0.0.1:7001"))
		defer s.Close()
	}
	parkedAll := func() bool {
		e.pool.mu.Lock()
		defer e.pool.mu.Unlock()
		for _, list := range e.pool.conns {
			for _, cc := range list {
				cc.c.mu.Lock()
				w := cc.c.recvWindow
				cc.c.mu.Unlock()
				if w <= connWindow-4*parked {
					return true
				}
			}
		}
		return false
	}
	if !eventually(parkedAll) {
		t.Fatal("the parked data never arrived")
	}
	s := e.mustDial(netip.MustParseAddrPort("127.0.0.1:7002"))
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(b, pattern(10<<20)) {
		t.Fatalf("read %d bytes, %v; want 10 MiB", len(b), err)
	}
	if st := e.pool.Stats(); st.Connections != 1 {
		t.Errorf("streams spread over %d connections; the test needs one", st.Connections)
	}
}
