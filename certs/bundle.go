package certs

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// TrustBundle is the set of root certificates a trust domain accepts. It holds
// several roots while one is rotated out, is safe for concurrent use, and
// keeps a ready x509.CertPool so verifying a handshake does not rebuild it.
type TrustBundle struct {
	td spiffeid.TrustDomain

	mu      sync.RWMutex
	roots   []*x509.Certificate
	pool    *x509.CertPool
	version uint64
	changed chan struct{}
}

var _ x509bundle.Source = (*TrustBundle)(nil)

// NewTrustBundle returns a bundle for td holding roots (duplicates dropped).
func NewTrustBundle(td spiffeid.TrustDomain, roots ...*x509.Certificate) *TrustBundle {
	b := &TrustBundle{td: td, changed: make(chan struct{})}
	b.Set(roots)
	return b
}

// TrustDomain is the trust domain the bundle speaks for.
func (b *TrustBundle) TrustDomain() spiffeid.TrustDomain { return b.td }

// Roots returns a copy of the current roots, in insertion order.
func (b *TrustBundle) Roots() []*x509.Certificate {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return append([]*x509.Certificate(nil), b.roots...)
}

// Pool returns the current roots as a certificate pool. Callers must not
// modify it.
func (b *TrustBundle) Pool() *x509.CertPool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.pool
}

// Version increases by one with every change of the root set.
func (b *TrustBundle) Version() uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.version
}

// Changed returns a channel closed at the next change of the root set.
func (b *TrustBundle) Changed() <-chan struct{} {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.changed
}

// Contains reports whether root is in the bundle.
func (b *TrustBundle) Contains(root *x509.Certificate) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return indexOf(b.roots, root) >= 0
}

// Set replaces the roots. It reports whether the set changed.
func (b *TrustBundle) Set(roots []*x509.Certificate) bool {
	var uniq []*x509.Certificate
	for _, r := range roots {
		if r != nil && indexOf(uniq, r) < 0 {
			uniq = append(uniq, r)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if sameCerts(b.roots, uniq) && b.pool != nil {
		return false
	}
	b.install(uniq)
	return true
}

// Add adds a root. It reports whether the bundle changed.
func (b *TrustBundle) Add(root *x509.Certificate) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if indexOf(b.roots, root) >= 0 {
		return false
	}
	b.install(append(append([]*x509.Certificate(nil), b.roots...), root))
	return true
}

// Remove drops a root. It reports whether the bundle changed.
func (b *TrustBundle) Remove(root *x509.Certificate) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	i := indexOf(b.roots, root)
	if i < 0 {
		return false
	}
	next := append(append([]*x509.Certificate(nil), b.roots[:i]...), b.roots[i+1:]...)
	b.install(next)
	return true
}

// install must be called with mu held.
func (b *TrustBundle) install(roots []*x509.Certificate) {
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	b.roots, b.pool = roots, pool
	b.version++
	if b.changed != nil {
		close(b.changed)
	}
	b.changed = make(chan struct{})
}

// PEM returns the roots as concatenated PEM blocks.
func (b *TrustBundle) PEM() []byte { return EncodeCertificates(b.Roots()) }

// GetX509BundleForTrustDomain implements go-spiffe's x509bundle.Source.
func (b *TrustBundle) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != b.td {
		return nil, fmt.Errorf("certs: no trust bundle for trust domain %q (this bundle is for %q)", td, b.td)
	}
	return x509bundle.FromX509Authorities(td, b.Roots()), nil
}

// Verify checks a peer's certificate chain (leaf first) against the bundle
// at time now and returns the leaf's SPIFFE ID. The errors name the problem:
// a missing certificate, a foreign trust domain, an expired or unknown chain.
func (b *TrustBundle) Verify(chain []*x509.Certificate, now time.Time) (spiffeid.ID, [][]*x509.Certificate, error) {
	if len(chain) == 0 {
		return spiffeid.ID{}, nil, errors.New("peer presented no certificate")
	}
	leaf := chain[0]
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return spiffeid.ID{}, nil, fmt.Errorf("peer certificate is not an X.509-SVID: %w", err)
	}
	if !id.MemberOf(b.td) {
		return id, nil, fmt.Errorf("peer %s is in trust domain %q, this proxy trusts only %q", id, id.TrustDomain(), b.td)
	}
	if leaf.IsCA || leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return id, nil, fmt.Errorf("peer %s: leaf certificate is a CA certificate", id)
	}
	if now.IsZero() {
		now = time.Now()
	}
	if now.After(leaf.NotAfter) {
		return id, nil, fmt.Errorf("peer %s: certificate expired at %s (now %s)", id, leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return id, nil, fmt.Errorf("peer %s: certificate not valid before %s (now %s)", id, leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	opts := x509.VerifyOptions{
		Roots:       b.Pool(),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CurrentTime: now,
	}
	if len(chain) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range chain[1:] {
			opts.Intermediates.AddCert(c)
		}
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return id, nil, fmt.Errorf("peer %s: chain does not verify against the %d root(s) of trust domain %q: %w", id, len(b.Roots()), b.td, err)
	}
	return id, chains, nil
}

func indexOf(list []*x509.Certificate, c *x509.Certificate) int {
	for i, x := range list {
		if bytes.Equal(x.Raw, c.Raw) {
			return i
		}
	}
	return -1
}

func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Raw, b[i].Raw) {
			return false
		}
	}
	return true
}
