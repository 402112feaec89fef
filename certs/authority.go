package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Authority is a key and certificate that sign SVIDs, with the path up to
// the root that peers must trust.
type Authority struct {
	// Cert signs SVIDs. For a self-signed root it is the root itself.
	Cert *x509.Certificate
	// Key is Cert's private key.
	Key crypto.Signer
	// Intermediates are the certificates between Cert and Root, Cert's
	// issuer first. Empty when Cert is the root or is signed by it directly.
	Intermediates []*x509.Certificate
	// Root is the trust anchor the chain ends in; it goes into trust bundles.
	Root *x509.Certificate
}

// Chain returns the certificates an SVID signed by a carries after its leaf:
// the signing certificate and intermediates, never the root.
func (a *Authority) Chain() []*x509.Certificate {
	if bytes.Equal(a.Cert.Raw, a.Root.Raw) {
		return nil
	}
	return append([]*x509.Certificate{a.Cert}, a.Intermediates...)
}

// NotAfter is the earliest expiry along the authority's chain.
func (a *Authority) NotAfter() time.Time {
	t := a.Cert.NotAfter
	for _, c := range append([]*x509.Certificate{a.Root}, a.Intermediates...) {
		if c.NotAfter.Before(t) {
			t = c.NotAfter
		}
	}
	return t
}

// Validate checks that the authority can sign: a CA certificate with
// keyCertSign, matching its key, chaining to Root, valid at now.
func (a *Authority) Validate(now time.Time) error {
	switch {
	case a == nil || a.Cert == nil || a.Key == nil || a.Root == nil:
		return errors.New("certs: authority needs a certificate, its key and a root")
	case !a.Cert.IsCA || a.Cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return fmt.Errorf("certs: signing certificate %q is not a CA certificate with keyCertSign", a.Cert.Subject)
	case !a.Root.IsCA:
		return fmt.Errorf("certs: root %q is not a CA certificate", a.Root.Subject)
	}
	if !publicKeysEqual(a.Key.Public(), a.Cert.PublicKey) {
		return fmt.Errorf("certs: signing key does not match certificate %q", a.Cert.Subject)
	}
	if now.After(a.Cert.NotAfter) {
		return fmt.Errorf("certs: signing certificate %q expired at %s", a.Cert.Subject, a.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	roots := x509.NewCertPool()
	roots.AddCert(a.Root)
	inter := x509.NewCertPool()
	for _, c := range a.Intermediates {
		inter.AddCert(c)
	}
	if _, err := a.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("certs: signing certificate %q does not chain to root %q: %w", a.Cert.Subject, a.Root.Subject, err)
	}
	return nil
}

// NewRootAuthority generates a self-signed ECDSA P-256 root for td, valid
// from now-backdate for ttl.
func NewRootAuthority(td spiffeid.TrustDomain, ttl, backdate time.Duration, now time.Time) (*Authority, error) {
	key, err := GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("certs: generate root key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Warren"}, CommonName: "Warren root CA " + td.Name() + " " + now.UTC().Format("2006-01-02T15:04:05Z")},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(ttl),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            1,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		URIs:                  []*url.URL{td.ID().URL()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certs: create root certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse root certificate: %w", err)
	}
	return &Authority{Cert: cert, Key: key, Root: cert}, nil
}

// LoadAuthority reads a plugged-in CA: rootFile holds the root, certFile the
// signing certificate (optionally followed by intermediates, leaf-side
// first), keyFile its private key. The root file may hold several roots; the
// one the chain ends in becomes the authority's root.
func LoadAuthority(rootFile, certFile, keyFile string, now time.Time) (*Authority, []*x509.Certificate, error) {
	read := func(path, what string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("certs: %s: %w", what, err)
		}
		return b, nil
	}
	rootPEM, err := read(rootFile, "root certificate file")
	if err != nil {
		return nil, nil, err
	}
	roots, err := ParseCertificates(rootPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %s: %w", rootFile, err)
	}
	certPEM, err := read(certFile, "signing certificate file")
	if err != nil {
		return nil, nil, err
	}
	chain, err := ParseCertificates(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %s: %w", certFile, err)
	}
	keyPEM, err := read(keyFile, "signing key file")
	if err != nil {
		return nil, nil, err
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %s: %w", keyFile, err)
	}
	a := &Authority{Cert: chain[0], Key: key, Intermediates: chain[1:]}
	var lastErr error
	for _, r := range roots {
		a.Root = r
		if lastErr = a.Validate(now); lastErr == nil {
			return a, roots, nil
		}
	}
	return nil, nil, fmt.Errorf("certs: plugged-in CA (%s, %s, %s): %w", rootFile, certFile, keyFile, lastErr)
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certs: serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if e, ok := a.(equaler); ok {
		return e.Equal(b)
	}
	if ea, ok := a.(*ecdsa.PublicKey); ok {
		return ea.Equal(b)
	}
	return false
}
