package retry

import (
	"testing"
	"time"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

func TestPolicy(t *testing.T) {
	if FromProto(nil) != nil || FromProto(&warrenv1.Retry{Codes: []uint32{500}}) != nil {
		t.Fatal("no attempts, no policy")
	}
	p := FromProto(&warrenv1.Retry{Codes: []uint32{500, 503}, Attempts: 3})
	if p.Backoff != DefaultBackoff || !p.RetryOn(503) || p.RetryOn(502) || p.RetryOn(0) {
		t.Fatalf("%+v", p)
	}
	p.Backoff = 100 * time.Millisecond
	for n, lo := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 10: time.Second} {
		for range 20 {
			if d := p.Delay(n); d < lo || d > lo*5/4 {
				t.Fatalf("Delay(%d) = %v, want [%v, %v]", n, d, lo, lo*5/4)
			}
		}
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestBudget(t *testing.T) {
	var nilBudget *Budget
	nilBudget.Request()
	if !nilBudget.TryRetry() || NewBudget(nil, nil) != nil {
		t.Fatal("no policy means no limit")
	}
	c := &clock{t: time.Unix(1000, 0)}
	b := NewBudget(&warrenv1.RetryBudget{Percent: 20, IntervalMs: 10000, MinRetryCount: 2, MinRetryIntervalMs: 1000}, c.now)
	// 100 original requests, every one wants a retry.
	allowed := 0
	for range 100 {
		b.Request()
		if b.TryRetry() {
			allowed++
		}
	}
	// r retries within 20% of all requests: r <= 0.2(100+r) → r <= 25.
	if allowed != 25 {
		t.Fatalf("allowed %d retries for 100 requests, want 25", allowed)
	}
	// The minimum rate: 2 per second always go, even with no traffic.
	c.t = c.t.Add(1500 * time.Millisecond)
	for i, want := range []bool{true, true, false} {
		if got := b.TryRetry(); got != want {
			t.Fatalf("min retry rate: retry %d allowed=%v, want %v (2 per interval)", i, got, want)
		}
	}
	// After the budget interval the window is empty again.
	c.t = c.t.Add(11 * time.Second)
	b.Request()
	b.Request()
	for i, want := range []bool{true, true, false} {
		// two by the min rate; a third would be 3 of 5 requests, over 20%
		if got := b.TryRetry(); got != want {
			t.Fatalf("fresh window: retry %d allowed=%v, want %v", i, got, want)
		}
	}
	// Defaults.
	d := NewBudget(&warrenv1.RetryBudget{}, c.now)
	if d.percent != DefaultPercent || d.win.width != DefaultInterval/buckets || d.min.width != DefaultMinRetryInterval/buckets {
		t.Fatalf("defaults %+v", d)
	}
}
