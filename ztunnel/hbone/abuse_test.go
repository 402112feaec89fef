package hbone

import (
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// peakGoroutines samples the goroutine count until stop is closed.
func peakGoroutines(stop <-chan struct{}) <-chan int {
	out := make(chan int, 1)
	go func() {
		peak := 0
		for {
			peak = max(peak, runtime.NumGoroutine())
			select {
			case <-stop:
				out <- peak
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return out
}

// blockingHandler never answers until the client gives up (as a handler
// stuck dialing a slow app would), counting the handlers that ran.
func blockingHandler(started *atomic.Int64) Handler {
	return HandlerFunc(func(r *Request) {
		started.Add(1)
		<-r.Context().Done()
	})
}

// afterAbuse checks the server is still healthy: a normal dial works.
func afterAbuse(t *testing.T, e *env) {
	t.Helper()
	app := echoApp(t)
	s := e.mustDial(app)
	s.Write([]byte("ok?"))
	s.CloseWrite()
	b, err := io.ReadAll(s)
	s.Close()
	if err != nil || string(b) != "ok?" {
		t.Fatalf("server unhealthy after abuse: %q, %v", b, err)
	}
}

// TestRapidReset: HEADERS immediately followed by RST_STREAM, thousands of
// times (CVE-2023-44487). Handlers stay bounded by the stream limit and
// the client is sent away with ENHANCE_YOUR_CALM.
func TestRapidReset(t *testing.T) {
	checkGoroutines(t)
	var started atomic.Int64
	const limit = 50
	e := newEnv(t, HandlerFunc(func(r *Request) {
		if r.Authority.Port() == 9 {
			blockingHandler(&started).ServeHBONE(r)
			return
		}
		proxy().ServeHBONE(r)
	}), func(_ *env, so *ServerOptions, _ *PoolOptions) { so.MaxConcurrentStreams = limit })
	base := runtime.NumGoroutine()
	stop := make(chan struct{})
	peak := peakGoroutines(stop)

	rc := e.rawDial()
	go func() {
		for i := uint32(0); i < 5000; i++ {
			id := 2*i + 1
			rc.headers(id, false, ":method", "CONNECT", ":authority", "127.0.0.1:9")
			rc.mu.Lock()
			rc.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			rc.mu.Unlock()
			if i%64 == 0 {
				rc.flush()
			}
		}
		rc.flush()
	}()
	code, ok := rc.goAway()
	if !ok || code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("rapid reset: GOAWAY %v (received %v), want ENHANCE_YOUR_CALM", code, ok)
	}
	e.waitServeErr("ENHANCE_YOUR_CALM") // early resets or, while handlers wind down, refused streams
	close(stop)
	if p := <-peak; p > base+limit+20 {
		t.Errorf("goroutines peaked at %d (base %d, stream limit %d)", p, base, limit)
	}
	t.Logf("handlers started: %d of 5000 streams; goroutine base %d", started.Load(), base)
	afterAbuse(t, e)
}

// TestStreamFlood: a client that ignores MAX_CONCURRENT_STREAMS gets
// REFUSED_STREAM beyond it and GOAWAY once it keeps going.
func TestStreamFlood(t *testing.T) {
	checkGoroutines(t)
	var started atomic.Int64
	const limit = 20
	e := newEnv(t, HandlerFunc(func(r *Request) {
		if r.Authority.Port() == 9 {
			blockingHandler(&started).ServeHBONE(r)
			return
		}
		proxy().ServeHBONE(r)
	}), func(_ *env, so *ServerOptions, _ *PoolOptions) { so.MaxConcurrentStreams = limit })
	base := runtime.NumGoroutine()
	stop := make(chan struct{})
	peak := peakGoroutines(stop)
	rc := e.rawDial()
	go func() {
		for i := uint32(0); i < 1000; i++ {
			rc.headers(2*i+1, false, ":method", "CONNECT", ":authority", "127.0.0.1:9")
		}
		rc.flush()
	}()
	var refused int
	var code http2.ErrCode
	var gotGoAway bool
	for {
		f, err := rc.next(func(http2.Frame) bool { return true })
		if err != nil {
			break
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if f.ErrCode == http2.ErrCodeRefusedStream {
				refused++
			}
		case *http2.GoAwayFrame:
			code, gotGoAway = f.ErrCode, true
		}
		if gotGoAway {
			break
		}
	}
	if refused < refuseBudget {
		t.Errorf("%d streams refused, want at least %d", refused, refuseBudget)
	}
	if !gotGoAway || code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("GOAWAY %v (received %v), want ENHANCE_YOUR_CALM", code, gotGoAway)
	}
	if n := started.Load(); n > limit {
		t.Errorf("%d handlers ran, limit %d", n, limit)
	}
	e.waitServeErr("over the limit")
	close(stop)
	if p := <-peak; p > base+limit+20 {
		t.Errorf("goroutines peaked at %d (base %d, limit %d)", p, base, limit)
	}
	afterAbuse(t, e)
}

// TestOversizedHeaders: a header list over the limit gets 431 and the
// connection lives on; a CONTINUATION flood or one huge field closes the
// connection with GOAWAY.
func TestOversizedHeaders(t *testing.T) {
	checkGoroutines(t)
	app := echoApp(t)
	e := newEnv(t, proxy())

	t.Run("431", func(t *testing.T) {
		rc := e.rawDial()
		kv := []string{":method", "CONNECT", ":authority", app.String()}
		for i := 0; i < 20; i++ {
			kv = append(kv, "x-filler", strings.Repeat("v", 1024))
		}
		// 21 KiB of fields whose encoding fits one 16 KiB HEADERS frame
		// (HPACK indexes the repeated field). Spread over CONTINUATION
		// frames, the framer would rather close the connection than
		// decode past the limit (the next subtest).
		block := rc.block(kv...)
		if len(block) > 16384 {
			t.Fatalf("header block of %d bytes does not fit one frame", len(block))
		}
		rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true})
		rc.flush()
		if got := rc.status(1); got != 431 {
			t.Fatalf("status %d, want 431", got)
		}
		rc.headers(3, false, ":method", "CONNECT", ":authority", app.String())
		rc.flush()
		if got := rc.status(3); got != 200 {
			t.Fatalf("next request on the same connection: %d", got)
		}
	})
	t.Run("CONTINUATION flood", func(t *testing.T) {
		rc := e.rawDial()
		go func() {
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: rc.block(":method", "CONNECT")})
			junk := make([]byte, 16000)
			for i := 0; i < 2000; i++ { // 32 MB if nobody stopped us
				if rc.fr.WriteContinuation(1, false, junk) != nil {
					return
				}
			}
			rc.flush()
		}()
		if code, ok := rc.goAway(); ok && code == http2.ErrCodeNo {
			t.Fatalf("GOAWAY NO_ERROR for a CONTINUATION flood")
		}
		e.waitServeErr("PROTOCOL_ERROR")
	})
	t.Run("one huge field", func(t *testing.T) {
		rc := e.rawDial()
		block := rc.block(":method", "CONNECT", ":authority", app.String(), "x-big", strings.Repeat("b", 40000))
		go func() {
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:16384]})
			for rest := block[16384:]; len(rest) > 0; {
				n := min(len(rest), 16384)
				rc.fr.WriteContinuation(1, n == len(rest), rest[:n])
				rest = rest[n:]
			}
			rc.flush()
		}()
		f, err := rc.next(func(f http2.Frame) bool {
			switch f := f.(type) {
			case *http2.MetaHeadersFrame:
				return f.StreamID == 1
			case *http2.GoAwayFrame:
				return true
			}
			return false
		})
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if f.PseudoValue("status") != "431" {
				t.Fatalf("status %s, want 431 or GOAWAY", f.PseudoValue("status"))
			}
		case *http2.GoAwayFrame:
			if f.ErrCode == http2.ErrCodeNo {
				t.Fatal("GOAWAY NO_ERROR for an oversized field")
			}
		default:
			if err == nil {
				t.Fatal("no answer")
			}
		}
	})
	afterAbuse(t, e)
}

// TestControlFrameFlood: a peer that floods PINGs and never reads our
// answers is disconnected once the backlog passes its bound.
func TestControlFrameFlood(t *testing.T) {
	checkGoroutines(t)
	e := newEnv(t, proxy())
	rc := e.rawDial()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 1_000_000; i++ {
			if rc.fr.WritePing(false, [8]byte{byte(i)}) != nil {
				return
			}
		}
		rc.flush()
	}()
	e.waitServeErr("does not read its frames")
	rc.tc.Close()
	wg.Wait()
	afterAbuse(t, e)
}

// TestProtocolViolations: frames that break the protocol close the
// connection with GOAWAY naming the error, never a crash.
func TestProtocolViolations(t *testing.T) {
	checkGoroutines(t)
	e := newEnv(t, HandlerFunc(func(r *Request) {
		if r.Authority.Port() == 9 { // accept, never read
			if _, err := r.Accept(); err == nil {
				<-r.Context().Done()
			}
			return
		}
		proxy().ServeHBONE(r)
	}))
	cases := []struct {
		name string
		send func(rc *rawClient)
		want http2.ErrCode
	}{
		{"DATA on an idle stream", func(rc *rawClient) { rc.fr.WriteData(5, false, []byte("x")) }, http2.ErrCodeProtocol},
		{"even stream id", func(rc *rawClient) { rc.headers(2, false, ":method", "CONNECT", ":authority", "127.0.0.1:9") }, http2.ErrCodeProtocol},
		{"decreasing stream id", func(rc *rawClient) {
			rc.headers(5, true, ":method", "GET", ":authority", "127.0.0.1:9")
			rc.headers(3, true, ":method", "GET", ":authority", "127.0.0.1:9")
		}, http2.ErrCodeProtocol},
		{"window overflow", func(rc *rawClient) {
			rc.fr.WriteWindowUpdate(0, 1<<31-1)
		}, http2.ErrCodeFlowControl},
		{"connection window overrun", func(rc *rawClient) {
			// 5 streams x 3.9 MiB: within each stream's window, over
			// the connection's 16 MiB, and nobody reads.
			big := make([]byte, 16000)
			for id := uint32(1); id <= 9; id += 2 {
				rc.headers(id, false, ":method", "CONNECT", ":authority", "127.0.0.1:9")
				for i := 0; i < 256; i++ {
					rc.fr.WriteData(id, false, big)
				}
			}
		}, http2.ErrCodeFlowControl},
		{"stream window overrun", func(rc *rawClient) {
			rc.headers(1, false, ":method", "CONNECT", ":authority", "127.0.0.1:9")
			big := make([]byte, 16000)
			for i := 0; i < 300; i++ { // 4.8 MB > 4 MiB
				rc.fr.WriteData(1, false, big)
			}
			rc.fr.WriteData(3, false, []byte("x")) // then a connection error to end the test
		}, http2.ErrCodeProtocol},
		{"bad hpack", func(rc *rawClient) {
			rc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff}, EndHeaders: true})
		}, http2.ErrCodeCompression},
		{"frame over the size limit", func(rc *rawClient) {
			rc.fr.WriteRawFrame(http2.FrameData, 0, 1, make([]byte, maxFrameSize+1))
		}, http2.ErrCodeFrameSize},
		{"push promise", func(rc *rawClient) {
			rc.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: rc.block(":method", "GET"), EndHeaders: true})
		}, http2.ErrCodeProtocol},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := e.rawDial()
			rc.fr.AllowIllegalWrites = true
			go func() {
				c.send(rc)
				rc.flush()
			}()
			code, ok := rc.goAway()
			if !ok || code != c.want {
				t.Errorf("GOAWAY %v (received %v), want %v", code, ok, c.want)
			}
		})
	}
	afterAbuse(t, e)
}
