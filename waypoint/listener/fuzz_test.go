package listener

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

// closingHandler answers HTTP with 200 after reading the body and closes
// TCP connections at once.
type closingHandler struct{}

func (closingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	_, _ = io.WriteString(w, "ok")
}

func (closingHandler) ServeTCP(_ context.Context, _ *Meta, c net.Conn) { _ = c.Close() }

// FuzzRequestParsing feeds arbitrary bytes to the accept side as an
// undeclared-protocol connection: it must answer or close within the
// timeouts, never panic or hang.
func FuzzRequestParsing(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
		"GET /../../etc HTTP/1.0\r\n\r\n",
		"\x16\x03\x01\x00",
	} {
		f.Add([]byte(s))
	}
	s := New(closingHandler{}, Options{SniffTimeout: 50 * time.Millisecond, ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: 100 * time.Millisecond})
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() {
			s.ServeConn(b, Meta{Service: "svc", Protocol: warrenv1.Protocol_PROTOCOL_UNSPECIFIED})
			close(done)
		}()
		_ = a.SetDeadline(time.Now().Add(3 * time.Second))
		go func() { _, _ = a.Write(in) }()
		// Read whatever comes back until the server closes or the deadline.
		br := bufio.NewReader(a)
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				break
			}
			_, _ = io.Copy(io.Discard, resp.Body)
		}
		a.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("ServeConn did not return for %q", in)
		}
	})
}
