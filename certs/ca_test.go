package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestCAPersistsSelfSignedRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca1, err := NewCA(Options{TrustDomain: td, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	root := ca1.Signer().Root
	if !root.IsCA || root.PublicKeyAlgorithm != x509.ECDSA || root.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Fatalf("root is not an ECDSA P-256 CA: %+v", root)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode = %v, %v; want 0700", st.Mode().Perm(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Fatalf("data dir holds %d files, want 3 (signer key, chain, bundle)", len(entries))
	}
	for _, e := range entries {
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
	ca2, err := NewCA(Options{TrustDomain: td, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca2.Signer().Root.Raw, root.Raw) {
		t.Fatal("restart generated a new root instead of loading the persisted one")
	}
	if got := len(ca2.Bundle().Roots()); got != 1 {
		t.Fatalf("bundle holds %d roots, want 1", got)
	}
}

func TestSignCSRProducesSVID(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	ca := newTestCA(t, func(o *Options) { o.Now = func() time.Time { return now } })
	id := mustID(t, "default", "web")
	svid, err := ca.NewSVID(id, 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf := svid.Certificates[0]
	if len(svid.Certificates) != 1 {
		t.Fatalf("chain has %d certs, want only the leaf for a root signer", len(svid.Certificates))
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/default/sa/web" {
		t.Fatalf("URIs = %v", leaf.URIs)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Fatalf("leaf has extra SANs: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 || leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
		t.Fatalf("bad key usage / CA flag: IsCA=%v usage=%v", leaf.IsCA, leaf.KeyUsage)
	}
	if got := leaf.NotAfter.Sub(now); got != DefaultSVIDTTL {
		t.Fatalf("lifetime after now = %s, want %s", got, DefaultSVIDTTL)
	}
	if got := now.Sub(leaf.NotBefore); got != DefaultBackdate {
		t.Fatalf("backdate = %s, want %s", got, DefaultBackdate)
	}
	if _, _, err := ca.Bundle().Verify(svid.Certificates, now); err != nil {
		t.Fatalf("leaf does not verify against the CA bundle: %v", err)
	}
}

func TestSignCSRRejectsBadRequests(t *testing.T) {
	ca := newTestCA(t, func(o *Options) { o.MaxTTL = 48 * time.Hour })
	id := mustID(t, "default", "web")
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := url.Parse("spiffe://cluster.local/ns/other/sa/x")
	csr := func(key any, tmpl x509.CertificateRequest) []byte {
		der, err := x509.CreateCertificateRequest(rand.Reader, &tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	good := csr(p256, x509.CertificateRequest{URIs: []*url.URL{id.URL()}})
	tampered := append([]byte(nil), good...)
	tampered[len(tampered)-5] ^= 0xff
	otherTD := spiffeid.RequireFromString("spiffe://other.example/ns/default/sa/web")
	cases := []struct {
		name string
		der  []byte
		id   spiffeid.ID
		ttl  time.Duration
		want string
	}{
		{"malformed DER", []byte("not a csr"), id, 0, "csr:"},
		{"bad signature", tampered, id, 0, "csr signature"},
		{"DNS SAN", csr(p256, x509.CertificateRequest{DNSNames: []string{"evil.example"}}), id, 0, "DNS SANs"},
		{"IP SAN", csr(p256, x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}), id, 0, "IP SANs"},
		{"email SAN", csr(p256, x509.CertificateRequest{EmailAddresses: []string{"a@b.c"}}), id, 0, "email SANs"},
		{"two URIs", csr(p256, x509.CertificateRequest{URIs: []*url.URL{id.URL(), other}}), id, 0, "2 URI SANs"},
		{"other identity in CSR", csr(p256, x509.CertificateRequest{URIs: []*url.URL{other}}), id, 0, "differs from the requested identity"},
		{"P-224 key", csr(p224, x509.CertificateRequest{}), id, 0, "curve P-224 not allowed"},
		{"RSA 1024", csr(rsa1024, x509.CertificateRequest{}), id, 0, "RSA key of 1024 bits"},
		{"Ed25519", csr(edKey, x509.CertificateRequest{}), id, 0, "key type ed25519.PublicKey not allowed"},
		{"TTL above max", good, id, 49 * time.Hour, "exceeds the maximum"},
		{"negative TTL", good, id, -time.Second, "negative ttl"},
		{"foreign trust domain", csr(p256, x509.CertificateRequest{}), otherTD, 0, "outside trust domain"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			chain, err := ca.SignCSR(tc.der, tc.id, tc.ttl)
			if err == nil {
				t.Fatalf("signed %v; want rejection", chain[0].URIs)
			}
			if !errors.Is(err, ErrInvalidRequest) {
				t.Fatalf("error %v does not wrap ErrInvalidRequest", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	if _, err := ca.SignCSR(good, id, 48*time.Hour); err != nil {
		t.Fatalf("valid request at max TTL rejected: %v", err)
	}
}

func TestPluggedInCA(t *testing.T) {
	now := time.Now()
	root, err := NewRootAuthority(td, 24*time.Hour, time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	interKey, _ := GenerateKey()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "warren intermediate"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(12 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.Cert, interKey.Public(), root.Key)
	if err != nil {
		t.Fatal(err)
	}
	inter, _ := x509.ParseCertificate(der)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyPEM, _ := EncodeKey(interKey)
	other, _ := NewRootAuthority(td, time.Hour, 0, now)
	opts := Options{
		TrustDomain:  td,
		RootCertFile: write("root.pem", EncodeCertificates([]*x509.Certificate{other.Root, root.Root})),
		CertFile:     write("ca.pem", EncodeCertificates([]*x509.Certificate{inter})),
		KeyFile:      write("ca-key.pem", keyPEM),
	}
	ca, err := NewCA(opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(ca.Bundle().Roots()); got != 2 {
		t.Fatalf("bundle has %d roots, want both from the root file", got)
	}
	svid, err := ca.NewSVID(mustID(t, "a", "b"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(svid.Certificates) != 2 || !bytes.Equal(svid.Certificates[1].Raw, inter.Raw) {
		t.Fatalf("chain should be leaf + intermediate, got %d certs", len(svid.Certificates))
	}
	if _, _, err := ca.Bundle().Verify(svid.Certificates, time.Now()); err != nil {
		t.Fatalf("verify: %v", err)
	}
	// Intermediate TTL bounds the leaf.
	long, err := ca.NewSVID(mustID(t, "a", "b"), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if long.Certificates[0].NotAfter.After(inter.NotAfter) {
		t.Fatal("leaf outlives its intermediate")
	}
	// A key that does not match is refused with the file names.
	wrongKey, _ := GenerateKey()
	wrongPEM, _ := EncodeKey(wrongKey)
	opts.KeyFile = write("wrong-key.pem", wrongPEM)
	if _, err := NewCA(opts); err == nil || !strings.Contains(err.Error(), "does not match") || !strings.Contains(err.Error(), "wrong-key.pem") {
		t.Fatalf("mismatched key: err = %v", err)
	}
}

func TestCAOptionsValidation(t *testing.T) {
	for name, o := range map[string]Options{
		"no trust domain":   {DataDir: t.TempDir()},
		"neither mode":      {TrustDomain: td},
		"both modes":        {TrustDomain: td, DataDir: t.TempDir(), RootCertFile: "r", CertFile: "c", KeyFile: "k"},
		"partial plug-in":   {TrustDomain: td, RootCertFile: "r"},
		"default above max": {TrustDomain: td, DataDir: t.TempDir(), DefaultTTL: 2 * time.Hour, MaxTTL: time.Hour},
	} {
		if _, err := NewCA(o); err == nil {
			t.Errorf("%s: NewCA accepted it", name)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "signer-key.pem"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewCA(Options{TrustDomain: td, DataDir: dir}); err == nil || !strings.Contains(err.Error(), "signer-key.pem") {
		t.Fatalf("corrupt data dir: err = %v, want one naming the file", err)
	}
}
