package retry

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

// DefaultBackoff is the base backoff when a route sets none (Envoy's).
const DefaultBackoff = 25 * time.Millisecond

// Policy is a route's retry policy.
type Policy struct {
	Codes []uint32
	// Attempts is the number of retries after the first attempt.
	Attempts int
	// Backoff is the base wait before the first retry; later retries
	// double it, up to ten times the base.
	Backoff time.Duration
}

// FromProto converts a route's Retry; nil (no retries) when r is nil or
// allows no attempts.
func FromProto(r *warrenv1.Retry) *Policy {
	if r == nil || r.GetAttempts() == 0 {
		return nil
	}
	p := &Policy{Codes: r.GetCodes(), Attempts: int(r.GetAttempts()), Backoff: time.Duration(r.GetBackoffMs()) * time.Millisecond}
	if p.Backoff <= 0 {
		p.Backoff = DefaultBackoff
	}
	return p
}

// RetryOn reports whether a response status is retryable.
func (p *Policy) RetryOn(status int) bool {
	return p != nil && status > 0 && slices.Contains(p.Codes, uint32(status))
}

// Delay is the wait before retry n (1-based): Backoff·2^(n-1), capped at
// 10·Backoff, plus up to 25% jitter; never less than Backoff.
func (p *Policy) Delay(n int) time.Duration {
	d := p.Backoff
	for i := 1; i < n && d < 10*p.Backoff; i++ {
		d *= 2
	}
	if d > 10*p.Backoff {
		d = 10 * p.Backoff
	}
	if q := int64(d / 4); q > 0 {
		d += time.Duration(rand.Int64N(q))
	}
	return d
}

// Budget defaults (the Gateway API's XBackendTrafficPolicy defaults).
const (
	DefaultPercent          = 20
	DefaultInterval         = 10 * time.Second
	DefaultMinRetryInterval = time.Second
)

const buckets = 10

// window counts events in a sliding window of `buckets` time slices.
type window struct {
	width time.Duration // one bucket
	start [buckets]int64
	reqs  [buckets]uint64
	rets  [buckets]uint64
}

func newWindow(d time.Duration) window {
	w := d / buckets
	if w <= 0 {
		w = time.Millisecond
	}
	return window{width: w}
}

// slot returns the bucket for now, resetting it if stale.
func (w *window) slot(now int64) int {
	t := now - now%int64(w.width)
	i := int((t / int64(w.width)) % buckets)
	if w.start[i] != t {
		w.start[i], w.reqs[i], w.rets[i] = t, 0, 0
	}
	return i
}

// sums returns requests and retries in the window ending now.
func (w *window) sums(now int64) (reqs, rets uint64) {
	oldest := now - now%int64(w.width) - int64(w.width)*(buckets-1)
	for i := range buckets {
		if w.start[i] >= oldest {
			reqs += w.reqs[i]
			rets += w.rets[i]
		}
	}
	return reqs, rets
}

// Budget limits retries to one backend Service. Safe for concurrent use.
// A nil *Budget allows every retry (no XBackendTrafficPolicy budget).
type Budget struct {
	mu       sync.Mutex
	percent  uint64
	minCount uint64
	win, min window
	now      func() time.Time
	cfg      *warrenv1.RetryBudget
}

// NewBudget returns a budget for cfg (defaults for zero fields), or nil
// (no limit) when cfg is nil. now is the clock (time.Now when nil).
func NewBudget(cfg *warrenv1.RetryBudget, now func() time.Time) *Budget {
	if cfg == nil {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	b := &Budget{now: now, cfg: cfg, percent: uint64(cfg.GetPercent()), minCount: uint64(cfg.GetMinRetryCount())}
	if cfg.GetPercent() == 0 {
		b.percent = DefaultPercent
	}
	iv := time.Duration(cfg.GetIntervalMs()) * time.Millisecond
	if iv <= 0 {
		iv = DefaultInterval
	}
	miv := time.Duration(cfg.GetMinRetryIntervalMs()) * time.Millisecond
	if miv <= 0 {
		miv = DefaultMinRetryInterval
	}
	b.win, b.min = newWindow(iv), newWindow(miv)
	return b
}

// Config is what the budget was built from.
func (b *Budget) Config() *warrenv1.RetryBudget {
	if b == nil {
		return nil
	}
	return b.cfg
}

// Request counts one original (first-attempt) request.
func (b *Budget) Request() {
	if b == nil {
		return
	}
	now := b.now().UnixNano()
	b.mu.Lock()
	b.win.reqs[b.win.slot(now)]++
	b.mu.Unlock()
}

// TryRetry reports whether one more retry fits the budget and, if so,
// counts it. A retry fits when fewer than the minimum count were made in
// the minimum-rate interval, or when after it retries are at most percent
// of all requests (originals and retries) sent in the budget interval.
func (b *Budget) TryRetry() bool {
	if b == nil {
		return true
	}
	now := b.now().UnixNano()
	b.mu.Lock()
	defer b.mu.Unlock()
	_, minRets := b.min.sums(now)
	reqs, rets := b.win.sums(now)
	ok := minRets < b.minCount || (rets+1)*100 <= b.percent*(reqs+rets+1)
	if ok {
		b.win.rets[b.win.slot(now)]++
		b.min.rets[b.min.slot(now)]++
	}
	return ok
}
