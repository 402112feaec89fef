package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Defaults for Options.
const (
	DefaultSVIDTTL  = 24 * time.Hour
	DefaultMaxTTL   = 7 * 24 * time.Hour
	DefaultRootTTL  = 10 * 365 * 24 * time.Hour
	DefaultBackdate = 5 * time.Minute
)

// ErrInvalidRequest marks signing requests rejected for their content
// (malformed CSR, wrong key, extra SANs, TTL above the maximum). Callers map
// it to InvalidArgument.
var ErrInvalidRequest = errors.New("invalid certificate request")

// Options configure a CA. Exactly one of DataDir or the plugged-in files
// (RootCertFile, CertFile, KeyFile) is set.
type Options struct {
	// TrustDomain of every identity the CA signs. Required.
	TrustDomain spiffeid.TrustDomain
	// DataDir holds the self-signed root, generated on first start and
	// loaded afterwards (files 0600, directory 0700), and the rotation state.
	DataDir string
	// RootCertFile, CertFile and KeyFile plug in an external CA: the root(s)
	// peers trust, the signing (intermediate) certificate chain and its key.
	RootCertFile, CertFile, KeyFile string
	// DefaultTTL applies when a request names none. Default 24h.
	DefaultTTL time.Duration
	// MaxTTL is the longest SVID lifetime granted. Default 7 days.
	MaxTTL time.Duration
	// RootTTL is the lifetime of generated roots. Default 10 years.
	RootTTL time.Duration
	// Backdate moves NotBefore into the past to absorb clock skew. Default 5m.
	Backdate time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (o *Options) defaults() error {
	if o.TrustDomain.IsZero() {
		return errors.New("certs: CA needs a trust domain")
	}
	if (o.DataDir == "") == (o.RootCertFile == "" && o.CertFile == "" && o.KeyFile == "") {
		return errors.New("certs: CA needs either a data dir (self-signed root) or root, cert and key files (plugged-in CA), not both")
	}
	if o.DataDir == "" && (o.RootCertFile == "" || o.CertFile == "" || o.KeyFile == "") {
		return errors.New("certs: a plugged-in CA needs all of root cert, cert and key files")
	}
	if o.DefaultTTL <= 0 {
		o.DefaultTTL = DefaultSVIDTTL
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = DefaultMaxTTL
	}
	if o.DefaultTTL > o.MaxTTL {
		return fmt.Errorf("certs: default TTL %s exceeds max TTL %s", o.DefaultTTL, o.MaxTTL)
	}
	if o.RootTTL <= 0 {
		o.RootTTL = DefaultRootTTL
	}
	if o.Backdate < 0 {
		return errors.New("certs: negative backdate")
	}
	if o.Backdate == 0 {
		o.Backdate = DefaultBackdate
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// CA signs X.509 SVIDs for one trust domain and manages its roots.
//
// Root rotation is three steps, each safe to persist and resume:
// PrepareRoot (or PrepareAuthority) adds the next root to the trust bundle
// while the current signer keeps signing; ActivatePending makes it the
// signer once every peer trusts it; RetireRoot drops the old root once no
// live SVID chains to it.
type CA struct {
	opts   Options
	bundle *TrustBundle
	store  *dirStore // nil for a plugged-in CA

	mu      sync.RWMutex
	signer  *Authority
	pending *Authority
	changed chan struct{}
}

// NewCA loads or creates the CA described by opts.
func NewCA(opts Options) (*CA, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	c := &CA{opts: opts, bundle: NewTrustBundle(opts.TrustDomain), changed: make(chan struct{})}
	now := opts.Now()
	if opts.DataDir == "" {
		a, roots, err := LoadAuthority(opts.RootCertFile, opts.CertFile, opts.KeyFile, now)
		if err != nil {
			return nil, err
		}
		c.signer = a
		c.bundle.Set(roots)
		return c, nil
	}
	c.store = &dirStore{dir: opts.DataDir}
	st, err := c.store.load()
	if err != nil {
		return nil, err
	}
	if st.signer == nil {
		a, err := NewRootAuthority(opts.TrustDomain, opts.RootTTL, opts.Backdate, now)
		if err != nil {
			return nil, err
		}
		st = storedState{signer: a, roots: []*x509.Certificate{a.Root}}
		if err := c.store.save(st); err != nil {
			return nil, err
		}
	}
	if err := st.signer.Validate(now); err != nil {
		return nil, fmt.Errorf("certs: data dir %s: %w", opts.DataDir, err)
	}
	if st.pending != nil {
		if err := st.pending.Validate(now); err != nil {
			return nil, fmt.Errorf("certs: data dir %s: pending root: %w", opts.DataDir, err)
		}
	}
	c.signer, c.pending = st.signer, st.pending
	roots := st.roots
	for _, a := range []*Authority{st.signer, st.pending} {
		if a != nil && indexOf(roots, a.Root) < 0 {
			roots = append(roots, a.Root)
		}
	}
	c.bundle.Set(roots)
	return c, nil
}

// TrustDomain is the CA's trust domain.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.opts.TrustDomain }

// Bundle is the live trust bundle: every root peers must accept.
func (c *CA) Bundle() *TrustBundle { return c.bundle }

// Signer returns the authority currently signing SVIDs.
func (c *CA) Signer() *Authority {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.signer
}

// Pending returns the authority prepared by PrepareRoot, or nil.
func (c *CA) Pending() *Authority {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.pending
}

// Changed returns a channel closed at the next rotation step (a root
// prepared, a signer activated, a root retired).
func (c *CA) Changed() <-chan struct{} {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.changed
}

// MaxTTL is the longest lifetime the CA grants.
func (c *CA) MaxTTL() time.Duration { return c.opts.MaxTTL }

// SignCSR validates a DER-encoded PKCS#10 request for id and returns the
// SVID chain: the leaf, then any intermediates (never the root). ttl 0 means
// the default. Every rejection wraps ErrInvalidRequest and names the problem.
func (c *CA) SignCSR(csrDER []byte, id spiffeid.ID, ttl time.Duration) ([]*x509.Certificate, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("%w: csr: %v", ErrInvalidRequest, err)
	}
	if err := CheckCSR(csr, id); err != nil {
		return nil, err
	}
	return c.sign(csr.PublicKey, id, ttl, nil)
}

// SignServing issues a certificate for one of Warren's own servers: the
// SPIFFE ID plus DNS names, for clients that verify by host name. It is
// never reachable from a CSR.
func (c *CA) SignServing(pub crypto.PublicKey, id spiffeid.ID, ttl time.Duration, dnsNames []string) ([]*x509.Certificate, error) {
	if err := checkPublicKey(pub); err != nil {
		return nil, err
	}
	return c.sign(pub, id, ttl, dnsNames)
}

// CheckCSR enforces what Warren accepts in a request for id: a valid
// self-signature, an ECDSA P-256/P-384 or RSA 2048–4096 key, and no SAN but
// (optionally) the URI of id itself.
func CheckCSR(csr *x509.CertificateRequest, id spiffeid.ID) error {
	if err := csr.CheckSignature(); err != nil {
		return fmt.Errorf("%w: csr signature: %v", ErrInvalidRequest, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return err
	}
	switch {
	case len(csr.DNSNames) > 0:
		return fmt.Errorf("%w: csr has DNS SANs %v; SVIDs carry only the SPIFFE ID", ErrInvalidRequest, csr.DNSNames)
	case len(csr.IPAddresses) > 0:
		return fmt.Errorf("%w: csr has IP SANs %v; SVIDs carry only the SPIFFE ID", ErrInvalidRequest, csr.IPAddresses)
	case len(csr.EmailAddresses) > 0:
		return fmt.Errorf("%w: csr has email SANs %v; SVIDs carry only the SPIFFE ID", ErrInvalidRequest, csr.EmailAddresses)
	case len(csr.URIs) > 1:
		return fmt.Errorf("%w: csr has %d URI SANs; at most one, the requested SPIFFE ID", ErrInvalidRequest, len(csr.URIs))
	case len(csr.URIs) == 1 && csr.URIs[0].String() != id.String():
		return fmt.Errorf("%w: csr URI SAN %q differs from the requested identity %q", ErrInvalidRequest, csr.URIs[0], id)
	}
	return nil
}

func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("%w: ECDSA curve %s not allowed (P-256 or P-384)", ErrInvalidRequest, k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 4096 {
			return fmt.Errorf("%w: RSA key of %d bits not allowed (2048 to 4096)", ErrInvalidRequest, n)
		}
	default:
		return fmt.Errorf("%w: key type %T not allowed (ECDSA P-256 or P-384, RSA 2048 to 4096)", ErrInvalidRequest, pub)
	}
	return nil
}

func (c *CA) sign(pub crypto.PublicKey, id spiffeid.ID, ttl time.Duration, dnsNames []string) ([]*x509.Certificate, error) {
	if !id.MemberOf(c.opts.TrustDomain) {
		return nil, fmt.Errorf("%w: identity %q is outside trust domain %q", ErrInvalidRequest, id, c.opts.TrustDomain)
	}
	if id.Path() == "" {
		return nil, fmt.Errorf("%w: identity %q has no path", ErrInvalidRequest, id)
	}
	switch {
	case ttl < 0:
		return nil, fmt.Errorf("%w: negative ttl %s", ErrInvalidRequest, ttl)
	case ttl == 0:
		ttl = c.opts.DefaultTTL
	case ttl > c.opts.MaxTTL:
		return nil, fmt.Errorf("%w: ttl %s exceeds the maximum %s", ErrInvalidRequest, ttl, c.opts.MaxTTL)
	}
	a := c.Signer()
	now := c.opts.Now()
	notBefore, notAfter := now.Add(-c.opts.Backdate), now.Add(ttl)
	if notBefore.Before(a.Cert.NotBefore) {
		notBefore = a.Cert.NotBefore
	}
	if end := a.NotAfter(); notAfter.After(end) {
		notAfter = end
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("certs: signing authority %q expired at %s", a.Cert.Subject, a.NotAfter().UTC().Format(time.RFC3339))
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{id.URL()},
		DNSNames:              dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, pub, a.Key)
	if err != nil {
		return nil, fmt.Errorf("certs: sign %s: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse signed %s: %w", id, err)
	}
	return append([]*x509.Certificate{leaf}, a.Chain()...), nil
}

// PrepareRoot generates the next self-signed root and adds it to the trust
// bundle without signing with it yet (rotation step 1).
func (c *CA) PrepareRoot() (*x509.Certificate, error) {
	a, err := NewRootAuthority(c.opts.TrustDomain, c.opts.RootTTL, c.opts.Backdate, c.opts.Now())
	if err != nil {
		return nil, err
	}
	if err := c.PrepareAuthority(a); err != nil {
		return nil, err
	}
	return a.Root, nil
}

// PrepareAuthority stages a given authority (e.g. a new plugged-in
// intermediate) as the next signer and adds its root to the bundle.
func (c *CA) PrepareAuthority(a *Authority) error {
	if err := a.Validate(c.opts.Now()); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending != nil {
		return errors.New("certs: a root rotation is already prepared; activate or retire it first")
	}
	prev := c.bundle.Roots()
	c.bundle.Add(a.Root)
	c.pending = a
	if err := c.persistLocked(); err != nil {
		c.pending = nil
		c.bundle.Set(prev)
		return err
	}
	return nil
}

// ActivatePending makes the prepared authority the signer (rotation step 2).
// The old root stays in the bundle so SVIDs it signed keep verifying.
func (c *CA) ActivatePending() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		return errors.New("certs: no prepared root to activate (run PrepareRoot first)")
	}
	if !c.bundle.Contains(c.pending.Root) {
		return errors.New("certs: prepared root is not in the trust bundle")
	}
	old, oldPending := c.signer, c.pending
	c.signer, c.pending = c.pending, nil
	if err := c.persistLocked(); err != nil {
		c.signer, c.pending = old, oldPending
		return err
	}
	return nil
}

// RetireRoot removes root from the trust bundle (rotation step 3). The
// active signer's root cannot be retired.
func (c *CA) RetireRoot(root *x509.Certificate) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if bytes.Equal(root.Raw, c.signer.Root.Raw) {
		return errors.New("certs: cannot retire the root of the active signer")
	}
	if c.pending != nil && bytes.Equal(root.Raw, c.pending.Root.Raw) {
		return errors.New("certs: cannot retire the root of the prepared signer")
	}
	prev := c.bundle.Roots()
	if !c.bundle.Remove(root) {
		return fmt.Errorf("certs: root %q is not in the trust bundle", root.Subject)
	}
	if err := c.persistLocked(); err != nil {
		c.bundle.Set(prev)
		return err
	}
	return nil
}

// persistLocked saves the state and, if that worked, announces the change.
func (c *CA) persistLocked() error {
	if c.store != nil {
		if err := c.store.save(storedState{signer: c.signer, pending: c.pending, roots: c.bundle.Roots()}); err != nil {
			return err
		}
	}
	close(c.changed)
	c.changed = make(chan struct{})
	return nil
}
