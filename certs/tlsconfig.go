package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ALPNHBONE is the only protocol HBONE negotiates.
const ALPNHBONE = "h2"

// Authorizer decides whether a verified peer identity may connect.
type Authorizer func(peer spiffeid.ID, verifiedChains [][]*x509.Certificate) error

// AuthorizeAny accepts every peer whose chain verified.
func AuthorizeAny() Authorizer {
	return func(spiffeid.ID, [][]*x509.Certificate) error { return nil }
}

// AuthorizeID accepts only the listed identities.
func AuthorizeID(allowed ...spiffeid.ID) Authorizer {
	return func(peer spiffeid.ID, _ [][]*x509.Certificate) error {
		for _, a := range allowed {
			if a == peer {
				return nil
			}
		}
		return fmt.Errorf("peer %s is not an allowed identity", peer)
	}
}

// TLSOptions tune the HBONE TLS configurations. The zero value is right
// for production.
type TLSOptions struct {
	// Now is the clock used to check validity. Default time.Now.
	Now func() time.Time
}

func (o TLSOptions) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// HBONEClientConfig returns the client side of HBONE: TLS 1.3 only, ALPN h2,
// the local SVID from svid, and the server's chain verified against bundle
// with its SPIFFE ID required to equal expected. Session resumption is off
// so every connection is checked against the current bundle.
func HBONEClientConfig(svid x509svid.Source, bundle *TrustBundle, expected spiffeid.ID, opts TLSOptions) *tls.Config {
	certs := &svidCertCache{src: svid}
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		MaxVersion:           tls.VersionTLS13,
		NextProtos:           []string{ALPNHBONE},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return certs.get() },
		// Chain and identity are checked in VerifyConnection against the
		// SPIFFE bundle: SVIDs carry no DNS name for the default check.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.NegotiatedProtocol != ALPNHBONE {
				return fmt.Errorf("certs: hbone server negotiated ALPN %q, want %q", cs.NegotiatedProtocol, ALPNHBONE)
			}
			id, _, err := bundle.Verify(cs.PeerCertificates, opts.now())
			if err != nil {
				return fmt.Errorf("certs: hbone server: %w", err)
			}
			if id != expected {
				return fmt.Errorf("certs: hbone server identity mismatch: got %s, want %s", id, expected)
			}
			return nil
		},
	}
}

// HBONEServerConfig returns the server side of HBONE: TLS 1.3 only, ALPN h2,
// a client certificate required and verified against bundle, and the
// client's SPIFFE ID passed to authorize. PeerID reads the identity back
// from the connection state afterwards.
func HBONEServerConfig(svid x509svid.Source, bundle *TrustBundle, authorize Authorizer, opts TLSOptions) *tls.Config {
	if authorize == nil {
		authorize = AuthorizeAny()
	}
	certs := &svidCertCache{src: svid}
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		MaxVersion:             tls.VersionTLS13,
		NextProtos:             []string{ALPNHBONE},
		GetCertificate:         func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return certs.get() },
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.NegotiatedProtocol != ALPNHBONE {
				return fmt.Errorf("certs: hbone client negotiated ALPN %q, want %q", cs.NegotiatedProtocol, ALPNHBONE)
			}
			id, chains, err := bundle.Verify(cs.PeerCertificates, opts.now())
			if err != nil {
				return fmt.Errorf("certs: hbone client: %w", err)
			}
			if err := authorize(id, chains); err != nil {
				return fmt.Errorf("certs: hbone client %s not authorized: %w", id, err)
			}
			return nil
		},
	}
}

// PeerID returns the SPIFFE ID of a verified peer.
func PeerID(cs tls.ConnectionState) (spiffeid.ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return spiffeid.ID{}, errors.New("certs: no peer certificate")
	}
	return x509svid.IDFromCert(cs.PeerCertificates[0])
}

// svidCertCache turns the source's current SVID into a tls.Certificate
// once per SVID rather than once per handshake.
type svidCertCache struct {
	src x509svid.Source
	cur atomic.Pointer[svidCert]
}

type svidCert struct {
	svid *x509svid.SVID
	cert *tls.Certificate
}

func (c *svidCertCache) get() (*tls.Certificate, error) {
	svid, err := c.src.GetX509SVID()
	if err != nil {
		return nil, err
	}
	if cur := c.cur.Load(); cur != nil && cur.svid == svid {
		return cur.cert, nil
	}
	cert := TLSCertificate(svid)
	c.cur.Store(&svidCert{svid: svid, cert: cert})
	return cert, nil
}

// TLSCertificate converts an SVID into a tls.Certificate (leaf first).
func TLSCertificate(svid *x509svid.SVID) *tls.Certificate {
	cert := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert
}
