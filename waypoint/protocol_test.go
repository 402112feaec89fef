package waypoint

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/warren-mesh/warren/waypoint/listener"
)

// protocolMesh adds Services with an h2c backend, an opaque TCP port and
// an undeclared port to the fixture.
func protocolMesh(t *testing.T) (string, *backend, net.Listener) {
	a := startBackend(t, "echo-1")
	h2 := startBackend(t, "h2-1")
	tcpIP := loopbackIP()
	tln, err := net.Listen("tcp", tcpIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tln.Close() })
	go func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c) // echo until the client half-closes
				_ = c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	tcpPod := pod{name: "db-1", app: "db", ip: tcpIP, port: tln.Addr().(*net.TCPAddr).Port, portName: "db"}
	h2pod := h2.pod("h2")
	extra := `apiVersion: v1
kind: Service
metadata: {name: h2, namespace: shop}
spec:
  clusterIP: 10.96.0.40
  ports: [{name: web, port: 80, targetPort: http, appProtocol: kubernetes.io/h2c}]
  selector: {app: h2}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: 10.96.0.41
  ports: [{name: db, port: 5432, targetPort: db, appProtocol: tcp}]
  selector: {app: db}
---
apiVersion: v1
kind: Service
metadata: {name: undeclared, namespace: shop}
spec:
  clusterIP: 10.96.0.42
  ports: [{name: db, port: 9000, targetPort: db}]
  selector: {app: db}
---
apiVersion: v1
kind: Service
metadata: {name: undeclared-http, namespace: shop}
spec:
  clusterIP: 10.96.0.43
  ports: [{name: other, port: 9001, targetPort: http}]
  selector: {app: echo}
`
	return mesh([]pod{a.pod("echo"), h2pod, tcpPod}, extra), a, tln
}

func h2cClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: p}}
}

func TestProtocols(t *testing.T) {
	doc, _, _ := protocolMesh(t)
	h := newHarness(t, doc, harnessOpts{})
	cfg := h.store.Config()
	if p := cfg.L7Services["shop/db.shop.svc.cluster.local"].GetPorts()[0].GetProtocol().String(); p != "TCP" {
		t.Fatalf("db port protocol %s", p)
	}
	if p := cfg.L7Services["shop/undeclared.shop.svc.cluster.local"].GetPorts()[0].GetProtocol().String(); p != "PROTOCOL_UNSPECIFIED" {
		t.Fatalf("undeclared port protocol %s", p)
	}
	echo := h.listen(echoDest())

	t.Run("h2c prior knowledge inbound, HTTP/1.1 upstream", func(t *testing.T) {
		resp, err := h2cClient().Get("http://" + echo + "/h2c")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.ProtoMajor != 2 || !strings.Contains(string(b), `"proto":"HTTP/1.1"`) {
			t.Fatalf("%s %s", resp.Proto, b)
		}
	})
	t.Run("h2c upstream for an http2 backend", func(t *testing.T) {
		addr := h.listen(Destination{Service: "shop/h2.shop.svc.cluster.local", Port: 80})
		if r := h.get(addr, "/x", nil); r.status != 200 || r.seen.Proto != "HTTP/2.0" {
			t.Fatalf("%d %q", r.status, r.seen.Proto)
		}
	})
	t.Run("opaque TCP passthrough with half-close", func(t *testing.T) {
		addr := h.listen(Destination{Service: "shop/db.shop.svc.cluster.local", Port: 5432})
		tcpRoundTrip(t, addr, "GET / HTTP/1.1\r\n\r\nnot http at all")
	})
	t.Run("sniffed TCP on an undeclared port", func(t *testing.T) {
		addr := h.listen(Destination{Service: "shop/undeclared.shop.svc.cluster.local", Port: 9000})
		tcpRoundTrip(t, addr, "\x00\x01binary protocol")
	})
	t.Run("sniffed HTTP/1.1 and h2c on an undeclared port", func(t *testing.T) {
		addr := h.listen(Destination{Service: "shop/undeclared-http.shop.svc.cluster.local", Port: 9001})
		if r := h.get(addr, "/sniffed", nil); r.status != 200 || r.seen.Path != "/sniffed" {
			t.Fatalf("HTTP/1.1: %d %q", r.status, r.seen.Path)
		}
		resp, err := h2cClient().Get("http://" + addr + "/sniffed-h2")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("h2c: %d %s", resp.StatusCode, resp.Proto)
		}
	})
	t.Run("server-first protocol on an undeclared port", func(t *testing.T) {
		// A client that waits for the server to speak first: after the sniff
		// timeout the connection is TCP and the bytes flow.
		addr := h.listen(Destination{Service: "shop/undeclared.shop.svc.cluster.local", Port: 9000})
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		time.Sleep(1200 * time.Millisecond)
		tcpExchange(t, c, "late hello")
	})
}

func tcpRoundTrip(t *testing.T, addr, msg string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tcpExchange(t, c, msg)
}

func tcpExchange(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != msg {
		t.Fatalf("echo %q %v, want %q", b, err, msg)
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	a := startBackend(t, "echo-1")
	a.setHandler(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || !strings.EqualFold(r.Header.Get("Connection"), "upgrade") {
			http.Error(w, "not an upgrade", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		buf := make([]byte, 64)
		n, _ := brw.Read(buf)
		_, _ = c.Write(bytes.ToUpper(buf[:n]))
	})
	h := newHarness(t, mesh([]pod{a.pod("echo")}), harnessOpts{})
	addr := h.listen(echoDest())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: echo\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	_, _ = io.WriteString(c, "hello frames")
	got := make([]byte, len("hello frames"))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "HELLO FRAMES" {
		t.Fatalf("after upgrade: %q %v", got, err)
	}
}

// rawExchange writes raw bytes and returns what the server answers
// (first response, or the error that ended the read).
func rawExchange(t *testing.T, addr, raw string) (*http.Response, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if resp != nil {
		_, _ = io.ReadAll(resp.Body)
	}
	return resp, err
}

func TestBadInput(t *testing.T) {
	a := startBackend(t, "echo-1")
	h := newHarness(t, mesh([]pod{a.pod("echo")}), harnessOpts{engine: func(o *Options) {
		o.Listener = listener.Options{ReadHeaderTimeout: 300 * time.Millisecond, MaxHeaderBytes: 8 << 10}
	}})
	addr := h.listen(echoDest())
	for _, c := range []struct {
		name, raw string
		status    int
	}{
		{"malformed request line", "GARBAGE\r\n\r\n", 400},
		{"bad content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400},
		{"conflicting content-lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400},
		{"negative content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
		{"bad header name", "GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"oversized headers", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431},
		// headers are fine and go upstream; the body is not: 400
		{"bad chunked body", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := rawExchange(t, addr, c.raw)
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
		})
	}
	t.Run("slowloris", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
		closed := false
		for i := 0; i < 50 && !closed; i++ {
			time.Sleep(50 * time.Millisecond)
			if _, err := io.WriteString(c, "X-Slow: 1\r\n"); err != nil {
				closed = true
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c) // ends when the server closes
		if el := time.Since(start); el > 4*time.Second {
			t.Fatalf("slow headers kept the connection for %v", el)
		}
		if len(b) > 0 && !strings.Contains(string(b), "408") {
			t.Fatalf("unexpected answer %q", b)
		}
	})
	if got := a.hits.Load(); got > 1 {
		t.Fatalf("bad requests reached the backend %d times (only the bad-body one may)", got)
	}
	// The engine still serves.
	if r := h.get(addr, "/after", nil); r.status != 200 {
		t.Fatalf("after bad input: %d", r.status)
	}
}

// TestHTTP2RapidReset opens streams and resets them at once (CVE-2023-44487);
// the server must stay healthy and not accumulate goroutines.
func TestHTTP2RapidReset(t *testing.T) {
	a := startBackend(t, "echo-1")
	a.setHandler(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(50 * time.Millisecond):
		}
	})
	h := newHarness(t, mesh([]pod{a.pod("echo")}), harnessOpts{})
	addr := h.listen(echoDest())
	if r := h.get(addr, "/warm", nil); r.status != 200 {
		t.Fatal(r.status)
	}
	base := runtime.NumGoroutine()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	_, _ = io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	_ = fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "echo"}, {":path", "/reset"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	done := make(chan struct{})
	go func() { // drain the server's frames
		defer close(done)
		for {
			if _, err := fr.ReadFrame(); err != nil {
				return
			}
		}
	}()
	const streams = 5000
	var werr error
	for i := range streams {
		id := uint32(2*i + 1)
		if werr = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); werr != nil {
			break
		}
		if werr = fr.WriteRSTStream(id, http2.ErrCodeCancel); werr != nil {
			break
		}
	}
	c.Close()
	<-done
	if !eventually(t, 10*time.Second, func() bool { return runtime.NumGoroutine() <= base+20 }) {
		t.Fatalf("goroutines %d after rapid reset, baseline %d", runtime.NumGoroutine(), base)
	}
	if got := a.hits.Load(); got > streams/2 {
		t.Errorf("%d of %d reset streams reached the backend", got, streams)
	}
	if r := h.get(addr, "/after", nil); r.status != 200 {
		t.Fatalf("after rapid reset: %d", r.status)
	}
	t.Logf("write error (the server may GOAWAY): %v; backend saw %d", werr, a.hits.Load())
	_ = fmt.Sprint()
}
