package certs

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestIdentitySourceRenewsAtHalfLife(t *testing.T) {
	ca := newTestCA(t, func(o *Options) { o.Backdate = time.Millisecond })
	id := mustID(t, "a", "web")
	var fetches atomic.Int32
	var mu sync.Mutex
	var fetchedAt []time.Time
	src, err := NewIdentitySource(IdentityOptions{
		ID: id,
		Fetch: func(context.Context) (*x509svid.SVID, error) {
			fetches.Add(1)
			mu.Lock()
			fetchedAt = append(fetchedAt, time.Now())
			mu.Unlock()
			return ca.NewSVID(id, 2*time.Second)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.GetX509SVID(); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("before Run: err = %v, want ErrNoIdentity", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.Run(ctx)
	select {
	case <-src.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("no first certificate")
	}
	first, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for fetches.Load() < 3 {
		select {
		case <-deadline:
			t.Fatalf("only %d fetches in 10s with 2s certificates", fetches.Load())
		case <-time.After(50 * time.Millisecond):
		}
	}
	mu.Lock()
	gap := fetchedAt[1].Sub(fetchedAt[0])
	// X.509 times have one-second precision, so the lifetime left at the
	// first fetch is between 1s and 2s; renewal is due at half of it ±10%.
	half := first.Certificates[0].NotAfter.Sub(fetchedAt[0]) / 2
	mu.Unlock()
	if gap < half*85/100 || gap > half*110/100+300*time.Millisecond {
		t.Fatalf("renewed after %s, want about %s (half the remaining lifetime)", gap, half)
	}
	cur, _ := src.GetX509SVID()
	if cur == first {
		t.Fatal("certificate not replaced after renewal")
	}
	if st := src.Status(); st.State != "valid" || st.Rotations < 3 || st.Serial == "" {
		t.Fatalf("status = %+v", st)
	}
}

func TestIdentitySourceRetriesWithBackoffAndNeverServesExpired(t *testing.T) {
	ca := newTestCA(t, func(o *Options) { o.Backdate = time.Millisecond })
	id := mustID(t, "a", "web")
	var calls atomic.Int32
	var failing atomic.Bool
	var clock atomic.Int64 // offset added to time.Now
	now := func() time.Time { return time.Now().Add(time.Duration(clock.Load())) }
	var errs atomic.Int32
	src, err := NewIdentitySource(IdentityOptions{
		ID:         id,
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 40 * time.Millisecond,
		Now:        now,
		OnError:    func(error) { errs.Add(1) },
		Fetch: func(context.Context) (*x509svid.SVID, error) {
			n := calls.Add(1)
			if n <= 3 || failing.Load() {
				return nil, errors.New("CA unavailable")
			}
			return ca.NewSVID(id, time.Hour)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	go src.Run(ctx)
	select {
	case <-src.Ready():
	case <-time.After(5 * time.Second):
		t.Fatalf("no certificate after %d fetches", calls.Load())
	}
	if calls.Load() != 4 || errs.Load() != 3 {
		t.Fatalf("calls=%d errors=%d, want 3 failures then success", calls.Load(), errs.Load())
	}
	// 10+20+40ms ±10%: well under a second, and not instant.
	if el := time.Since(start); el < 50*time.Millisecond || el > 2*time.Second {
		t.Fatalf("three retries took %s", el)
	}
	// The CA goes away and the clock passes the expiry: the source must
	// refuse to serve the stale certificate and say why.
	failing.Store(true)
	clock.Store(int64(2 * time.Hour))
	src.Renew()
	time.Sleep(50 * time.Millisecond)
	_, err = src.GetX509SVID()
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("after expiry: err = %v, want ErrExpired", err)
	}
	if st := src.Status(); st.State != "expired" || st.LastError == "" {
		t.Fatalf("status = %+v, want expired with the last error", st)
	}
	// Recovery: the CA returns; the next attempt heals it.
	clock.Store(0)
	failing.Store(false)
	src.Renew()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := src.GetX509SVID(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("did not recover after the CA came back")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestIdentitySourceRejectsWrongIdentity(t *testing.T) {
	ca := newTestCA(t)
	id, other := mustID(t, "a", "web"), mustID(t, "a", "db")
	src, _ := NewIdentitySource(IdentityOptions{
		ID:         id,
		MinBackoff: time.Hour,
		Fetch:      func(context.Context) (*x509svid.SVID, error) { return ca.NewSVID(other, time.Hour) },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	src.Run(ctx)
	if _, err := src.GetX509SVID(); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("served a certificate for the wrong identity: %v", err)
	}
	if st := src.Status(); st.Failures != 1 {
		t.Fatalf("failures = %d", st.Failures)
	}
}
