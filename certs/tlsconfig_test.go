package certs

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestHBONETLS(t *testing.T) {
	ca := newTestCA(t)
	clientID, serverID := mustID(t, "a", "client"), mustID(t, "b", "server")
	clientSVID, _ := ca.NewSVID(clientID, time.Hour)
	serverSVID, _ := ca.NewSVID(serverID, time.Hour)
	bundle := ca.Bundle()

	foreignTD := spiffeid.RequireTrustDomainFromString("evil.example")
	foreignCA, err := NewCA(Options{TrustDomain: foreignTD, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	foreignSVID, _ := foreignCA.NewSVID(spiffeid.RequireFromString("spiffe://evil.example/ns/a/sa/client"), time.Hour)
	// Same trust domain name, different root: an impostor CA.
	impostorCA := newTestCA(t)
	impostorSVID, _ := impostorCA.NewSVID(clientID, time.Hour)

	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	client := func(s *x509svid.SVID, expect spiffeid.ID, o TLSOptions) *tls.Config {
		return HBONEClientConfig(staticSVID{s}, bundle, expect, o)
	}
	server := func(s *x509svid.SVID, a Authorizer, o TLSOptions) *tls.Config {
		return HBONEServerConfig(staticSVID{s}, bundle, a, o)
	}
	noCert := HBONEClientConfig(staticSVID{clientSVID}, bundle, serverID, TLSOptions{})
	noCert.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
	tls12 := client(clientSVID, serverID, TLSOptions{})
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	noALPN := client(clientSVID, serverID, TLSOptions{})
	noALPN.NextProtos = []string{"http/1.1"}

	cases := []struct {
		name         string
		c, s         *tls.Config
		wantC, wantS string // substrings; "" means success
	}{
		{"ok", client(clientSVID, serverID, TLSOptions{}), server(serverSVID, AuthorizeAny(), TLSOptions{}), "", ""},
		{"identity mismatch", client(clientSVID, mustID(t, "b", "other"), TLSOptions{}), server(serverSVID, AuthorizeAny(), TLSOptions{}), "identity mismatch: got spiffe://cluster.local/ns/b/sa/server, want spiffe://cluster.local/ns/b/sa/other", "bad certificate"},
		{"server authorizer denies", client(clientSVID, serverID, TLSOptions{}), server(serverSVID, AuthorizeID(mustID(t, "x", "y")), TLSOptions{}), "", "not an allowed identity"},
		{"wrong trust domain", client(foreignSVID, serverID, TLSOptions{}), server(serverSVID, AuthorizeAny(), TLSOptions{}), "", `trust domain "evil.example", this proxy trusts only "cluster.local"`},
		{"unknown root", client(impostorSVID, serverID, TLSOptions{}), server(serverSVID, AuthorizeAny(), TLSOptions{}), "", "does not verify against the 1 root(s)"},
		{"expired client cert", client(clientSVID, serverID, TLSOptions{}), server(serverSVID, AuthorizeAny(), TLSOptions{Now: later}), "", "certificate expired at"},
		{"expired server cert", client(clientSVID, serverID, TLSOptions{Now: later}), server(serverSVID, AuthorizeAny(), TLSOptions{}), "certificate expired at", ""},
		{"no client cert", noCert, server(serverSVID, AuthorizeAny(), TLSOptions{}), "", "client didn't provide a certificate"},
		{"TLS 1.2 refused", tls12, server(serverSVID, AuthorizeAny(), TLSOptions{}), "protocol version", "unsupported versions"},
		{"no h2 ALPN", noALPN, server(serverSVID, AuthorizeAny(), TLSOptions{}), `negotiated ALPN "", want "h2"`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cErr, sErr := handshake(t, tc.c, tc.s)
			check := func(side string, err error, want string) {
				if want == "" {
					if err != nil && tc.wantC == "" && tc.wantS == "" {
						t.Errorf("%s: unexpected error %v", side, err)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("%s error = %v, want it to contain %q", side, err, want)
				}
			}
			check("client", cErr, tc.wantC)
			check("server", sErr, tc.wantS)
			if tc.wantC == "" && tc.wantS == "" && (cErr != nil || sErr != nil) {
				t.Fatalf("handshake failed: client %v server %v", cErr, sErr)
			}
			if tc.wantC != "" || tc.wantS != "" {
				if cErr == nil && sErr == nil {
					t.Fatal("handshake succeeded; want failure")
				}
			}
		})
	}
}

func TestPeerIDAfterHandshake(t *testing.T) {
	ca := newTestCA(t)
	clientID, serverID := mustID(t, "a", "client"), mustID(t, "b", "server")
	cs, _ := ca.NewSVID(clientID, time.Hour)
	ss, _ := ca.NewSVID(serverID, time.Hour)
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	srv := tls.Server(s, HBONEServerConfig(staticSVID{ss}, ca.Bundle(), AuthorizeAny(), TLSOptions{}))
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	cl := tls.Client(c, HBONEClientConfig(staticSVID{cs}, ca.Bundle(), serverID, TLSOptions{}))
	if err := cl.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	got, err := PeerID(srv.ConnectionState())
	if err != nil || got != clientID {
		t.Fatalf("server sees peer %v (%v), want %v", got, err, clientID)
	}
	got, err = PeerID(cl.ConnectionState())
	if err != nil || got != serverID {
		t.Fatalf("client sees peer %v (%v), want %v", got, err, serverID)
	}
	if _, err := PeerID(tls.ConnectionState{}); err == nil {
		t.Fatal("PeerID of an empty state succeeded")
	}
}
