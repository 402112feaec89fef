package certs

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

func newTestCA(t testing.TB, opts ...func(*Options)) *CA {
	t.Helper()
	o := Options{TrustDomain: td, DataDir: t.TempDir()}
	for _, f := range opts {
		f(&o)
	}
	ca, err := NewCA(o)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

func mustID(t testing.TB, ns, sa string) spiffeid.ID {
	t.Helper()
	id, err := WorkloadID(td, ns, sa)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// handshake runs a TLS handshake over loopback TCP (kernel buffers let a
// side write its alert without the peer reading) and returns the client's
// and server's errors. In TLS 1.3 the client finishes first, so a server
// rejecting the client shows up as a server error only.
func handshake(t testing.TB, client, server *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer s.Close()
		done <- tls.Server(s, server).HandshakeContext(ctx)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	clientErr = tls.Client(c, client).HandshakeContext(ctx)
	return clientErr, <-done
}
