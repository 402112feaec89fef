package xds

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// arrival is one client receiving one change.
type arrival struct {
	client int
	names  []string
	n      int
	at     time.Time
}

// propagation is a server with storeSize Workloads and n connected
// clients, ready to measure how one Workload change reaches them all.
type propagation struct {
	s        *testServer
	clients  int
	arrivals chan arrival
	store    []string
}

func newPropagation(tb testing.TB, clients, storeSize int) *propagation {
	tb.Helper()
	s := startServer(tb, Options{}) // default 20ms debounce
	full := map[string]proto.Message{}
	var store []string
	for i := 0; i < storeSize; i++ {
		w := workload(fmt.Sprintf("w%d", i), true)
		w.Addresses = []string{fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)}
		full[w.Uid] = w
		store = append(store, w.Uid)
	}
	if err := s.Set(TypeWorkload, full); err != nil {
		tb.Fatal(err)
	}
	p := &propagation{s: s, clients: clients, arrivals: make(chan arrival, clients*4), store: store}
	synced := make(chan struct{}, clients)
	for i := 0; i < clients; i++ {
		i := i
		initial := true
		h := handlerFunc(func(_ string, ups map[string]proto.Message, rems []string) error {
			if initial {
				initial = false
				synced <- struct{}{}
				return nil
			}
			names := make([]string, 0, len(ups))
			for n := range ups {
				names = append(names, n)
			}
			p.arrivals <- arrival{client: i, names: names, n: len(ups) + len(rems), at: time.Now()}
			return nil
		})
		runClient(tb, clientOpts(s.addr, fmt.Sprintf("ztunnel~node-%d", i), h, TypeWorkload))
	}
	for i := 0; i < clients; i++ {
		select {
		case <-synced:
		case <-time.After(60 * time.Second):
			tb.Fatalf("only %d of %d clients synced", i, clients)
		}
	}
	return p
}

// change updates one Workload and returns how long each client took to
// get it; it fails unless every client got exactly that one resource.
func (p *propagation) change(tb testing.TB, i int) []time.Duration {
	tb.Helper()
	name := p.store[i%len(p.store)]
	w := workload(name[len("default/"):], true)
	w.Zone = fmt.Sprintf("zone-%d", i) // a new version every time
	start := time.Now()
	if err := p.s.Update(TypeWorkload, map[string]proto.Message{name: w}, nil); err != nil {
		tb.Fatal(err)
	}
	lat := make([]time.Duration, 0, p.clients)
	limit := time.NewTimer(30 * time.Second)
	defer limit.Stop()
	for len(lat) < p.clients {
		select {
		case a := <-p.arrivals:
			if a.n != 1 || len(a.names) != 1 || a.names[0] != name {
				tb.Fatalf("client %d got %d resources %v, want only %s", a.client, a.n, a.names, name)
			}
			lat = append(lat, a.at.Sub(start))
		case <-limit.C:
			tb.Fatalf("change %d reached only %d of %d clients", i, len(lat), p.clients)
		}
	}
	return lat
}

type handlerFunc func(string, map[string]proto.Message, []string) error

func (f handlerFunc) Apply(t string, u map[string]proto.Message, r []string) error { return f(t, u, r) }

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// TestPropagationTo100Clients is the load test in correctness form: every
// one of 100 connected clients gets each change as exactly one resource.
// Speed is measured by BenchmarkPropagation100Clients; the bound here only
// catches hangs.
func TestPropagationTo100Clients(t *testing.T) {
	if testing.Short() {
		t.Skip("load test; skipped with -short")
	}
	p := newPropagation(t, 100, 1000)
	pushes0, bytes0 := p.s.counters.pushes.Load(), p.s.counters.bytes.Load()
	var all []time.Duration
	const changes = 20
	for i := 0; i < changes; i++ {
		all = append(all, p.change(t, i)...)
	}
	slices.Sort(all)
	pushes, bytes := p.s.counters.pushes.Load()-pushes0, p.s.counters.bytes.Load()-bytes0
	if pushes != changes*100 {
		t.Errorf("%d pushes for %d changes to 100 clients", pushes, changes)
	}
	t.Logf("100 clients, %d changes: p50 %.1fms p99 %.1fms max %.1fms; %.0f bytes per push",
		changes, ms(percentile(all, .5)), ms(percentile(all, .99)), ms(all[len(all)-1]), float64(bytes)/float64(pushes))
	if p99 := percentile(all, .99); p99 > 5*time.Second {
		t.Errorf("p99 %s: something is stuck", p99)
	}
}

// BenchmarkPropagation100Clients: one Workload change (in a store of 1000)
// reaching 100 connected delta-xDS clients, including the default 20ms
// debounce window; one op = one change delivered to all 100. Run with
// -benchtime=200x for stable percentiles.
func BenchmarkPropagation100Clients(b *testing.B) {
	p := newPropagation(b, 100, 1000)
	pushes0, bytes0 := p.s.counters.pushes.Load(), p.s.counters.bytes.Load()
	var all []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		all = append(all, p.change(b, i)...)
	}
	b.StopTimer()
	slices.Sort(all)
	pushes, bytes := p.s.counters.pushes.Load()-pushes0, p.s.counters.bytes.Load()-bytes0
	b.ReportMetric(ms(percentile(all, .5)), "p50-ms")
	b.ReportMetric(ms(percentile(all, .99)), "p99-ms")
	b.ReportMetric(ms(all[len(all)-1]), "max-ms")
	b.ReportMetric(float64(bytes)/float64(pushes), "bytes/push")
	b.ReportMetric(float64(pushes)/float64(b.N), "pushes/change")
	// What a state-of-the-world push of the type would carry instead.
	var full int
	for _, n := range p.store {
		if m, _, ok := p.s.Get(TypeWorkload, n); ok {
			full += proto.Size(m)
		}
	}
	b.ReportMetric(float64(full), "full-state-bytes")
}
