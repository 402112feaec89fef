package listener

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

func TestClassify(t *testing.T) {
	U, H, H2, T := warrenv1.Protocol_PROTOCOL_UNSPECIFIED, warrenv1.Protocol_HTTP, warrenv1.Protocol_HTTP2, warrenv1.Protocol_TCP
	for in, want := range map[string]warrenv1.Protocol{
		"":                                 U,
		"G":                                U,
		"GET":                              U,
		"GET ":                             H,
		"GETX":                             T,
		"P":                                U,
		"PRI * HTTP/2.0\r\n":               U,
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n": H2,
		"POST /":                           H,
		"PATCH ":                           H,
		"\x16\x03\x01":                     T, // TLS ClientHello
		"SSH-2.0":                          T,
		"get /":                            T,
	} {
		if got := Classify([]byte(in)); got != want {
			t.Errorf("Classify(%q) = %v, want %v", in, got, want)
		}
	}
}

type handler struct {
	tcp chan string
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m, _ := MetaFrom(r.Context())
	_, _ = io.WriteString(w, r.Proto+" "+m.Service)
}

func (h *handler) ServeTCP(_ context.Context, m *Meta, c net.Conn) {
	defer c.Close()
	b, _ := io.ReadAll(c)
	h.tcp <- m.Service + ":" + string(b)
}

func TestServeConnProtocols(t *testing.T) {
	h := &handler{tcp: make(chan string, 4)}
	s := New(h, Options{SniffTimeout: 200 * time.Millisecond})
	defer s.Close()
	serve := func(proto warrenv1.Protocol, write string, closeWrite bool) string {
		a, b := net.Pipe()
		go s.ServeConn(b, Meta{Service: "svc", Protocol: proto})
		_ = a.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			_, _ = io.WriteString(a, write)
			if closeWrite {
				_ = a.Close()
			}
		}()
		if closeWrite {
			return <-h.tcp
		}
		resp, err := http.ReadResponse(bufio.NewReader(a), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		a.Close()
		return string(body)
	}
	if got := serve(warrenv1.Protocol_HTTP, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false); got != "HTTP/1.1 svc" {
		t.Errorf("HTTP: %q", got)
	}
	if got := serve(warrenv1.Protocol_PROTOCOL_UNSPECIFIED, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false); got != "HTTP/1.1 svc" {
		t.Errorf("sniffed HTTP: %q", got)
	}
	if got := serve(warrenv1.Protocol_PROTOCOL_UNSPECIFIED, "\x16\x03\x01hello", true); got != "svc:\x16\x03\x01hello" {
		t.Errorf("sniffed TCP: %q", got)
	}
	if got := serve(warrenv1.Protocol_TCP, "GET / HTTP/1.1\r\n\r\n", true); !strings.HasPrefix(got, "svc:GET /") {
		t.Errorf("declared TCP: %q", got)
	}
}
