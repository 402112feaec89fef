package hbone

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/warren-mesh/warren/certs"
)

// Benchmarks run side by side against direct TCP to the same app, and
// against net/http's HTTP/2 server and transport doing the same CONNECT
// tunnel (the alternative to this package's own frame layer).
// bench/run.sh turns them into the ratios in BENCHMARKS.md.

// cpuTime is the CPU time (user + system) this process has used. The
// benchmarks report it per operation next to wall-clock time: both ends
// and the app run in this process, so it is the full cost of moving the
// bytes, and unlike wall-clock time it does not depend on what else the
// machine is running.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per operation since start.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// sysIO returns this process's read and write system calls so far
// (/proc/self/io; zero where it does not exist).
func sysIO() (r, w int64) {
	b, _ := os.ReadFile("/proc/self/io")
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "syscr":
			r = n
		case "syscw":
			w = n
		}
	}
	return
}

// reportSys reports read and write system calls per operation.
func reportSys(b *testing.B, r0, w0 int64) {
	r, w := sysIO()
	b.ReportMetric(float64(r-r0)/float64(b.N), "rd/op")
	b.ReportMetric(float64(w-w0)/float64(b.N), "wr/op")
}

// sinkApp reads until EOF, then answers the byte count (8 bytes).
func sinkApp(b testing.TB) netip.AddrPort {
	return tcpApp(b, func(c *net.TCPConn) {
		n, _ := io.CopyBuffer(io.Discard, c, make([]byte, 256<<10))
		var out [8]byte
		binary.BigEndian.PutUint64(out[:], uint64(n))
		c.Write(out[:])
		c.CloseWrite()
	})
}

// benchSend writes b.N chunks of 64 KiB to c, half-closes, and checks the
// sink's count.
func benchSend(b *testing.B, c io.ReadWriter, closeWrite func() error) {
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	defer reportCPU(b, cpuTime())
	r0, w0 := sysIO()
	defer func() { reportSys(b, r0, w0) }()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := closeWrite(); err != nil {
		b.Fatal(err)
	}
	var got [8]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if n := binary.BigEndian.Uint64(got[:]); n != uint64(b.N*len(buf)) {
		b.Fatalf("sink got %d bytes, want %d", n, b.N*len(buf))
	}
}

// BenchmarkThroughput: one stream, client → HBONE → server → TCP sink, vs
// the client writing to the sink directly.
func BenchmarkThroughput(b *testing.B) {
	sink := sinkApp(b)
	b.Run("tcp", func(b *testing.B) {
		c, err := net.Dial("tcp", sink.String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		benchSend(b, c, c.(*net.TCPConn).CloseWrite)
	})
	b.Run("hbone", func(b *testing.B) {
		e := newEnv(b, proxy())
		s := e.mustDial(sink)
		defer s.Close()
		benchSend(b, s, s.CloseWrite)
	})
	b.Run("nethttp", func(b *testing.B) {
		x := newStdEnv(b)
		t := x.dial(b, sink)
		defer t.Close()
		benchSend(b, t, t.CloseWrite)
	})
}

// benchFirstByte opens a connection, sends a byte to the echo app and
// reads it back, per iteration.
func benchFirstByte(b *testing.B, dial func() (io.ReadWriteCloser, error)) {
	one := []byte{1}
	start := cpuTime()
	defer func() { reportCPU(b, start) }()
	for b.Loop() {
		c, err := dial()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(one); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, one); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkFirstByte: open a tunnel, send a byte, read it back. Warm reuses
// a pooled connection; cold pays TCP + TLS + HTTP/2 setup every time.
func BenchmarkFirstByte(b *testing.B) {
	app := echoApp(b)
	b.Run("tcp", func(b *testing.B) {
		benchFirstByte(b, func() (io.ReadWriteCloser, error) { return net.Dial("tcp", app.String()) })
	})
	b.Run("hbone-warm", func(b *testing.B) {
		e := newEnv(b, proxy())
		e.mustDial(app).Close() // warm the pool
		benchFirstByte(b, func() (io.ReadWriteCloser, error) { return e.dial(app) })
	})
	b.Run("hbone-cold", func(b *testing.B) {
		e := newEnv(b, proxy())
		benchFirstByte(b, func() (io.ReadWriteCloser, error) {
			p := NewPool(PoolOptions{})
			s, err := p.Dial(context.Background(), e.req(app))
			if err != nil {
				return nil, err
			}
			return closeBoth{s, p}, nil
		})
	})
	b.Run("nethttp-warm", func(b *testing.B) {
		x := newStdEnv(b)
		x.dial(b, app).Close()
		benchFirstByte(b, func() (io.ReadWriteCloser, error) { return x.dial(b, app), nil })
	})
}

type closeBoth struct {
	*Stream
	p *Pool
}

func (c closeBoth) Close() error { c.Stream.Close(); return c.p.Close() }

// benchRR runs 1 KiB request/response exchanges over conns concurrently,
// b.N exchanges in all, and reports exchanges per second.
func benchRR(b *testing.B, conns []io.ReadWriter) {
	var next atomic.Int64
	req := make([]byte, 1024)
	b.SetBytes(int64(2 * len(req)))
	b.ResetTimer()
	start := cpuTime()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := make([]byte, len(req))
			for next.Add(1) <= int64(b.N) {
				if _, err := c.Write(req); err != nil {
					b.Error(err)
					return
				}
				if _, err := io.ReadFull(c, resp); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	reportCPU(b, start)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkRR64: 1 KiB request/response on 64 concurrent streams (one
// HBONE connection, the pool cap raised) vs 64 TCP connections.
func BenchmarkRR64(b *testing.B) {
	app := echoApp(b)
	const n = 64
	b.Run("tcp", func(b *testing.B) {
		var conns []io.ReadWriter
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp", app.String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			conns = append(conns, c)
		}
		benchRR(b, conns)
	})
	b.Run("hbone", func(b *testing.B) {
		e := newEnv(b, proxy())
		var conns []io.ReadWriter
		for i := 0; i < n; i++ {
			s := e.mustDial(app)
			defer s.Close()
			conns = append(conns, s)
		}
		benchRR(b, conns)
	})
	b.Run("nethttp", func(b *testing.B) {
		x := newStdEnv(b)
		var conns []io.ReadWriter
		for i := 0; i < n; i++ {
			t := x.dial(b, app)
			defer t.Close()
			conns = append(conns, t)
		}
		benchRR(b, conns)
	})
}

// BenchmarkIdleStreams: memory of 1,000 open, idle streams — client and
// server ends together, including the server's handler goroutine per
// stream (here blocked reading, as a splicing handler would be).
func BenchmarkIdleStreams(b *testing.B) {
	const n = 1000
	e := newEnv(b, HandlerFunc(func(r *Request) {
		s, err := r.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, s)
	}))
	target := netip.MustParseAddrPort("127.0.0.1:9")
	e.mustDial(target).Close() // TLS and pools warmed outside the measurement
	var perStream float64
	for b.Loop() {
		before := memInUse()
		streams := make([]*Stream, 0, n)
		for i := 0; i < n; i++ {
			streams = append(streams, e.mustDial(target))
		}
		if !eventually(func() bool { return e.srv.Stats().Handlers == n }) {
			b.Fatalf("server has %+v", e.srv.Stats())
		}
		perStream = float64(memInUse()-before) / n
		for _, s := range streams {
			s.Close()
		}
		if !eventually(func() bool { return e.srv.Stats().Handlers == 0 }) {
			b.Fatalf("handlers left: %+v", e.srv.Stats())
		}
	}
	b.ReportMetric(perStream, "B/idle-stream")
	b.ReportMetric(float64(e.pool.Stats().Connections), "conns")
}

func memInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// stdEnv is the same tunnel built from net/http's HTTP/2 (the bundled
// golang.org/x/net/http2 code, which DESIGN §4 names as the alternative):
// an http.Server whose handler goes full duplex with ResponseController,
// and an http.Transport sending CONNECT with a pipe body, both with this
// package's window and frame sizes.
type stdEnv struct {
	tr   *http.Transport
	addr string
}

func newStdEnv(b testing.TB) *stdEnv {
	e := newEnv(b, proxy()) // for certificates only
	h2 := &http.HTTP2Config{
		MaxReceiveBufferPerConnection: connWindow,
		MaxReceiveBufferPerStream:     streamWindow,
		MaxReadFrameSize:              maxFrameSize,
	}
	var protos http.Protocols
	protos.SetHTTP2(true)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		app, err := net.Dial("tcp", r.Host)
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		defer app.Close()
		rc := http.NewResponseController(w)
		rc.EnableFullDuplex()
		w.WriteHeader(http.StatusOK)
		rc.Flush()
		done := make(chan struct{})
		go func() {
			io.Copy(app, r.Body)
			app.(*net.TCPConn).CloseWrite()
			close(done)
		}()
		bp := splicePool.Get().(*[]byte) // the buffer Splice uses
		defer splicePool.Put(bp)
		buf := *bp
		for {
			n, err := app.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					break
				}
				rc.Flush()
			}
			if err != nil {
				break
			}
		}
		<-done
	})
	hs := &http.Server{
		Handler:   h,
		TLSConfig: certs.HBONEServerConfig(e.server, e.ca.Bundle(), certs.AuthorizeAny(), certs.TLSOptions{}),
		HTTP2:     h2,
		Protocols: &protos,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go hs.ServeTLS(ln, "", "")
	b.Cleanup(func() { hs.Close() })
	tr := &http.Transport{
		TLSClientConfig: certs.HBONEClientConfig(e.client, e.ca.Bundle(), e.serverID, certs.TLSOptions{}),
		HTTP2:           h2,
		Protocols:       &protos,
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &stdEnv{tr: tr, addr: ln.Addr().String()}
}

// stdTunnel is a CONNECT stream through http.Transport.
type stdTunnel struct {
	pw   *io.PipeWriter
	body io.ReadCloser
}

func (x *stdEnv) dial(b testing.TB, target netip.AddrPort) *stdTunnel {
	pr, pw := io.Pipe()
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Scheme: "https", Host: x.addr},
		Host:   target.String(),
		Header: http.Header{},
		Body:   pr,
	}
	resp, err := x.tr.RoundTrip(req)
	if err != nil {
		b.Fatalf("net/http CONNECT: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("net/http CONNECT: %s", resp.Status)
	}
	return &stdTunnel{pw: pw, body: resp.Body}
}

func (t *stdTunnel) Write(p []byte) (int, error) { return t.pw.Write(p) }
func (t *stdTunnel) Read(p []byte) (int, error)  { return t.body.Read(p) }
func (t *stdTunnel) CloseWrite() error           { return t.pw.Close() }
func (t *stdTunnel) Close() error {
	t.pw.Close()
	return t.body.Close()
}
