package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"
)

// BenchmarkSignCSR is the CA's work per SVID: parse and check the CSR
// (including its signature), sign, parse the result.
func BenchmarkSignCSR(b *testing.B) {
	ca := newTestCA(b)
	id := mustID(b, "a", "web")
	key, _ := GenerateKey()
	csr, _ := CreateCSR(key, id)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ca.SignCSR(csr, id, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewSVID adds the client's share: key generation and CSR.
func BenchmarkNewSVID(b *testing.B) {
	ca := newTestCA(b)
	id := mustID(b, "a", "web")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ca.NewSVID(id, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

// benchHandshake runs full mutual TLS 1.3 handshakes (both ends, in memory)
// with the given configurations.
func benchHandshake(b *testing.B, client, server *tls.Config) {
	b.ReportAllocs()
	for b.Loop() {
		c, s := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- tls.Server(s, server).Handshake() }()
		if err := tls.Client(c, client).Handshake(); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		c.Close()
		s.Close()
	}
}

// BenchmarkHandshakeHBONE uses the HBONE configurations: SPIFFE
// verification against the trust bundle on both sides.
func BenchmarkHandshakeHBONE(b *testing.B) {
	ca := newTestCA(b)
	clientID, serverID := mustID(b, "a", "client"), mustID(b, "b", "server")
	cs, _ := ca.NewSVID(clientID, time.Hour)
	ss, _ := ca.NewSVID(serverID, time.Hour)
	benchHandshake(b,
		HBONEClientConfig(staticSVID{cs}, ca.Bundle(), serverID, TLSOptions{}),
		HBONEServerConfig(staticSVID{ss}, ca.Bundle(), AuthorizeID(clientID), TLSOptions{}))
}

// BenchmarkHandshakePlain is the baseline: the same keys and CA, TLS 1.3,
// mutual, standard library verification by DNS name and client CA pool.
func BenchmarkHandshakePlain(b *testing.B) {
	ca := newTestCA(b)
	serverID := mustID(b, "b", "server")
	ck, _ := GenerateKey()
	sk, _ := GenerateKey()
	cchain, _ := ca.SignServing(ck.Public(), mustID(b, "a", "client"), time.Hour, nil)
	schain, _ := ca.SignServing(sk.Public(), serverID, time.Hour, []string{"server.b.svc"})
	pool := x509.NewCertPool()
	pool.AddCert(ca.Signer().Root)
	tc := func(chain []*x509.Certificate, key any) tls.Certificate {
		var raw [][]byte
		for _, c := range chain {
			raw = append(raw, c.Raw)
		}
		return tls.Certificate{Certificate: raw, PrivateKey: key, Leaf: chain[0]}
	}
	benchHandshake(b,
		&tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}, RootCAs: pool, ServerName: "server.b.svc", Certificates: []tls.Certificate{tc(cchain, ck)}},
		&tls.Config{MinVersion: tls.VersionTLS13, NextProtos: []string{"h2"}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, Certificates: []tls.Certificate{tc(schain, sk)}, SessionTicketsDisabled: true})
}
