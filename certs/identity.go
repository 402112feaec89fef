package certs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// ErrNoIdentity is returned before the first certificate arrives.
var ErrNoIdentity = errors.New("certs: no certificate yet")

// ErrExpired is returned when the only certificate held has expired: the
// source never serves an expired certificate.
var ErrExpired = errors.New("certs: certificate expired and renewal has not succeeded")

// FetchFunc obtains a fresh SVID (new key, CSR, CA call) for one identity.
type FetchFunc func(ctx context.Context) (*x509svid.SVID, error)

// IdentityOptions configure an IdentitySource.
type IdentityOptions struct {
	// ID is the identity the source serves. Fetched SVIDs must carry it.
	ID spiffeid.ID
	// Fetch obtains a new SVID. Required.
	Fetch FetchFunc
	// RenewFraction of the remaining lifetime after which to renew.
	// Default 0.5 (half-life).
	RenewFraction float64
	// Jitter spreads renewals by ±Jitter of the renewal delay. Default 0.1.
	Jitter float64
	// MinBackoff and MaxBackoff bound the retry delay after a failed fetch
	// (doubling from min). Defaults 200ms and 30s.
	MinBackoff, MaxBackoff time.Duration
	// OnError, if set, hears every failed fetch (binaries log it).
	OnError func(error)
	// OnRotate, if set, hears every new certificate.
	OnRotate func(*x509svid.SVID)
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// IdentitySource holds one workload's current SVID and renews it in the
// background: at half-life with jitter, retrying with exponential backoff.
// It implements x509svid.Source; once the held SVID expires, it returns
// ErrExpired instead of serving it.
type IdentitySource struct {
	opts IdentityOptions

	mu        sync.RWMutex
	svid      *x509svid.SVID
	lastErr   error
	failures  int
	rotations int
	ready     chan struct{}
	renewNow  chan struct{}
}

var _ x509svid.Source = (*IdentitySource)(nil)

// NewIdentitySource returns a source; Run starts fetching.
func NewIdentitySource(opts IdentityOptions) (*IdentitySource, error) {
	if opts.Fetch == nil {
		return nil, errors.New("certs: identity source needs a fetch function")
	}
	if opts.ID.IsZero() {
		return nil, errors.New("certs: identity source needs an identity")
	}
	if opts.RenewFraction <= 0 || opts.RenewFraction >= 1 {
		opts.RenewFraction = 0.5
	}
	if opts.Jitter < 0 || opts.Jitter >= 1 {
		return nil, fmt.Errorf("certs: jitter %v outside [0,1)", opts.Jitter)
	}
	if opts.Jitter == 0 {
		opts.Jitter = 0.1
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 200 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(30*time.Second, opts.MinBackoff)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &IdentitySource{opts: opts, ready: make(chan struct{}), renewNow: make(chan struct{}, 1)}, nil
}

// ID is the identity served.
func (s *IdentitySource) ID() spiffeid.ID { return s.opts.ID }

// Name identifies the runner.
func (s *IdentitySource) Name() string { return "identity " + s.opts.ID.String() }

// Ready is closed once the first certificate is held.
func (s *IdentitySource) Ready() <-chan struct{} { return s.ready }

// GetX509SVID returns the current SVID, ErrNoIdentity before the first one,
// or ErrExpired (wrapping the last fetch error) once it has expired.
func (s *IdentitySource) GetX509SVID() (*x509svid.SVID, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.svid == nil {
		if s.lastErr != nil {
			return nil, fmt.Errorf("%w: %s: last fetch: %v", ErrNoIdentity, s.opts.ID, s.lastErr)
		}
		return nil, fmt.Errorf("%w: %s", ErrNoIdentity, s.opts.ID)
	}
	if leaf := s.svid.Certificates[0]; !s.opts.Now().Before(leaf.NotAfter) {
		return nil, fmt.Errorf("%w: %s expired at %s; last fetch: %v", ErrExpired, s.opts.ID, leaf.NotAfter.UTC().Format(time.RFC3339), s.lastErr)
	}
	return s.svid, nil
}

// IdentityStatus is a snapshot for admin endpoints and metrics.
type IdentityStatus struct {
	ID        spiffeid.ID
	Serial    string
	NotBefore time.Time
	NotAfter  time.Time
	Rotations int
	Failures  int // consecutive failed fetches
	LastError string
	State     string // "pending", "valid", "expired"
}

// Status reports the current certificate and renewal health.
func (s *IdentitySource) Status() IdentityStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := IdentityStatus{ID: s.opts.ID, Rotations: s.rotations, Failures: s.failures, State: "pending"}
	if s.lastErr != nil {
		st.LastError = s.lastErr.Error()
	}
	if s.svid != nil {
		leaf := s.svid.Certificates[0]
		st.Serial = leaf.SerialNumber.Text(16)
		st.NotBefore, st.NotAfter = leaf.NotBefore, leaf.NotAfter
		st.State = "valid"
		if !s.opts.Now().Before(leaf.NotAfter) {
			st.State = "expired"
		}
	}
	return st
}

// Expiry is the NotAfter of the held certificate (zero before the first).
func (s *IdentitySource) Expiry() time.Time { return s.Status().NotAfter }

// Renew asks for an immediate renewal (e.g. after a root rotation).
func (s *IdentitySource) Renew() {
	select {
	case s.renewNow <- struct{}{}:
	default:
	}
}

// Run fetches the first SVID and keeps renewing until ctx ends.
func (s *IdentitySource) Run(ctx context.Context) error {
	backoff := s.opts.MinBackoff
	for {
		svid, err := s.fetch(ctx)
		var wait time.Duration
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.mu.Lock()
			s.lastErr, s.failures = err, s.failures+1
			s.mu.Unlock()
			if s.opts.OnError != nil {
				s.opts.OnError(err)
			}
			wait = s.jitter(backoff)
			backoff = min(backoff*2, s.opts.MaxBackoff)
			// Never sleep past the moment the held certificate expires
			// without trying again first.
			if exp := s.Expiry(); !exp.IsZero() {
				if left := exp.Sub(s.opts.Now()); left > 0 && left < wait {
					wait = left
				}
			}
		} else {
			backoff = s.opts.MinBackoff
			s.install(svid)
			wait = s.renewDelay(svid)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.renewNow:
			t.Stop()
		case <-t.C:
		}
	}
}

func (s *IdentitySource) fetch(ctx context.Context) (*x509svid.SVID, error) {
	svid, err := s.opts.Fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("certs: fetch %s: %w", s.opts.ID, err)
	}
	switch {
	case svid == nil || len(svid.Certificates) == 0 || svid.PrivateKey == nil:
		return nil, fmt.Errorf("certs: fetch %s: empty SVID", s.opts.ID)
	case svid.ID != s.opts.ID:
		return nil, fmt.Errorf("certs: fetch %s: CA issued %s instead", s.opts.ID, svid.ID)
	case !s.opts.Now().Before(svid.Certificates[0].NotAfter):
		return nil, fmt.Errorf("certs: fetch %s: CA issued an already expired certificate", s.opts.ID)
	}
	return svid, nil
}

func (s *IdentitySource) install(svid *x509svid.SVID) {
	s.mu.Lock()
	s.svid, s.lastErr, s.failures = svid, nil, 0
	s.rotations++
	first := s.rotations == 1
	s.mu.Unlock()
	if first {
		close(s.ready)
	}
	if s.opts.OnRotate != nil {
		s.opts.OnRotate(svid)
	}
}

// renewDelay is RenewFraction of the time left, jittered.
func (s *IdentitySource) renewDelay(svid *x509svid.SVID) time.Duration {
	left := svid.Certificates[0].NotAfter.Sub(s.opts.Now())
	return s.jitter(time.Duration(float64(left) * s.opts.RenewFraction))
}

func (s *IdentitySource) jitter(d time.Duration) time.Duration {
	f := 1 + s.opts.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}
