package certs

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// CreateCSR returns a DER PKCS#10 request for id signed by key, carrying id
// as its only SAN.
func CreateCSR(key crypto.Signer, id spiffeid.ID) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		return nil, fmt.Errorf("certs: create CSR for %s: %w", id, err)
	}
	return der, nil
}

// NewSVID generates a key and has the CA sign it for id, in process. The
// control plane uses it for its own identity; proxies go through the CA
// service instead.
func (c *CA) NewSVID(id spiffeid.ID, ttl time.Duration) (*x509svid.SVID, error) {
	key, err := GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("certs: generate key: %w", err)
	}
	csr, err := CreateCSR(key, id)
	if err != nil {
		return nil, err
	}
	chain, err := c.SignCSR(csr, id, ttl)
	if err != nil {
		return nil, err
	}
	return &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key}, nil
}

// SVIDFromChain assembles an SVID from a signed chain and the key it was
// requested with, checking that they belong together.
func SVIDFromChain(chain []*x509.Certificate, key crypto.Signer) (*x509svid.SVID, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("certs: empty certificate chain")
	}
	if !publicKeysEqual(key.Public(), chain[0].PublicKey) {
		return nil, fmt.Errorf("certs: certificate does not match the requested key")
	}
	id, err := x509svid.IDFromCert(chain[0])
	if err != nil {
		return nil, fmt.Errorf("certs: issued certificate: %w", err)
	}
	return &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key}, nil
}
