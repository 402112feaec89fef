package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// countingDialer counts dials.
type countingDialer struct {
	n atomic.Int64
	d TCPDialer
}

func (c *countingDialer) Dial(ctx context.Context, ep Endpoint) (net.Conn, error) {
	c.n.Add(1)
	return c.d.Dial(ctx, ep)
}

func TestClientPoolsAndProtocols(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto)
	}))
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = p
	srv.Start()
	defer srv.Close()
	d := &countingDialer{}
	c := New(d, Options{})
	defer c.Close()
	ep := Endpoint{Addr: srv.Listener.Addr().String()}
	for _, proto := range []Protocol{HTTP1, H2C} {
		for range 5 {
			req, _ := http.NewRequest("GET", "http://echo.example/x", nil)
			resp, err := c.RoundTrip(req, ep, proto)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := map[Protocol]string{HTTP1: "HTTP/1.1", H2C: "HTTP/2.0"}[proto]
			if string(b) != want {
				t.Fatalf("%v: %s", proto, b)
			}
		}
	}
	if d.n.Load() != 2 {
		t.Fatalf("%d dials for 10 sequential requests over 2 protocols, want 2 (pooled)", d.n.Load())
	}
}

func TestConnectError(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	c := New(TCPDialer{}, Options{})
	req, _ := http.NewRequest("GET", "http://x/", nil)
	_, err := c.RoundTrip(req, Endpoint{Addr: addr}, HTTP1)
	var ce *ConnectError
	if !errors.As(err, &ce) || ce.Endpoint.Addr != addr || !IsConnectError(err) {
		t.Fatalf("%T %v", err, err)
	}
}

func TestByTunnel(t *testing.T) {
	plain := &countingDialer{}
	b := ByTunnel{Plain: plain}
	if _, err := b.Dial(context.Background(), Endpoint{Addr: "127.0.0.1:1", HBONE: true}); err == nil {
		t.Fatal("HBONE endpoint without an HBONE dialer")
	}
	_, _ = b.Dial(context.Background(), Endpoint{Addr: "127.0.0.1:1"})
	if plain.n.Load() != 1 {
		t.Fatal("plain endpoint not sent to Plain")
	}
}
