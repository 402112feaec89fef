package certs

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FuzzSignCSR feeds arbitrary DER and identities to the CA. Whatever comes
// in, it must not panic, and anything it signs must be a proper SVID for
// the requested identity: one URI SAN, no other SAN, not a CA, an allowed
// key, within the maximum lifetime.
func FuzzSignCSR(f *testing.F) {
	ca, err := NewCA(Options{TrustDomain: td, DataDir: f.TempDir(), MaxTTL: 48 * time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	key, _ := GenerateKey()
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/a/sa/b")
	good, _ := CreateCSR(key, id)
	f.Add(good, "spiffe://cluster.local/ns/a/sa/b", int64(3600))
	f.Add(good, "spiffe://cluster.local/ns/a/sa/c", int64(0))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x00}, "spiffe://cluster.local/x", int64(-5))
	f.Fuzz(func(t *testing.T, der []byte, rawID string, ttlSeconds int64) {
		id, err := spiffeid.FromString(rawID)
		if err != nil {
			return
		}
		ttl := time.Duration(ttlSeconds%(100*24*3600)) * time.Second
		chain, err := ca.SignCSR(der, id, ttl)
		if err != nil {
			return
		}
		leaf := chain[0]
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() {
			t.Fatalf("signed URIs %v for %s", leaf.URIs, id)
		}
		if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 || leaf.IsCA {
			t.Fatalf("signed a certificate with extra SANs or CA flag: %+v", leaf)
		}
		switch k := leaf.PublicKey.(type) {
		case *ecdsa.PublicKey:
		case *rsa.PublicKey:
			if k.N.BitLen() < 2048 {
				t.Fatalf("signed a %d-bit RSA key", k.N.BitLen())
			}
		default:
			t.Fatalf("signed key type %T", leaf.PublicKey)
		}
		if time.Until(leaf.NotAfter) > 48*time.Hour+time.Minute {
			t.Fatalf("lifetime beyond max: %s", leaf.NotAfter)
		}
		if _, _, err := ca.Bundle().Verify(chain, time.Now()); err != nil {
			t.Fatalf("signed chain does not verify: %v", err)
		}
		if leaf.SignatureAlgorithm == x509.UnknownSignatureAlgorithm {
			t.Fatal("unknown signature algorithm")
		}
	})
}

// FuzzParseCertificatesAndKey checks the PEM readers never panic.
func FuzzParseCertificatesAndKey(f *testing.F) {
	ca, err := NewCA(Options{TrustDomain: td, DataDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ca.Bundle().PEM())
	k, _ := GenerateKey()
	kp, _ := EncodeKey(k)
	f.Add(kp)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificates(data)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificates")
		}
		_, _ = ParseKey(data)
	})
}
