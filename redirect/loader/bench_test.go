package loader_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/warren-mesh/warren/redirect/internal/podtest"
	"github.com/warren-mesh/warren/redirect/loader"
)

// Benchmarks (root): the cost capture adds to connect(), and the two ways
// ztunnel can learn an original destination. Connect loops run in pod
// processes with raw syscalls (socket, blocking connect, RST close) against
// a listener that accepts and closes; ns/connect is measured inside the
// pod process. All variants run in one `go test -bench` run, so their
// ratios compare like with like (make bench, BENCHMARKS.md).

type benchEnv struct {
	attach, free *podtest.Cgroup
	l            *loader.Loader
	pin          string
	// pod processes, each alone in its netns
	base     *podtest.Proc // no programs above it
	gated    *podtest.Proc // programs attached, netns not enrolled
	captured *podtest.Proc // programs attached, netns enrolled
	local    *podtest.Proc // programs attached, netns enrolled, loopback traffic
}

func newBenchEnv(b *testing.B, getsockopt bool) *benchEnv {
	podtest.Require(b)
	e := &benchEnv{}
	e.attach = podtest.NewCgroup(b, nil)
	e.free = podtest.NewCgroup(b, nil)
	e.pin = podtest.PinPath(b)
	l, err := loader.Open(loader.Options{Cgroup: e.attach.Path, PinPath: e.pin, AttachGetsockopt: getsockopt})
	if err != nil {
		b.Fatal(err)
	}
	e.l = l
	b.Cleanup(func() { l.Uninstall() })
	enrolled := podtest.NewNetns(b)
	ns, err := loader.OpenNetns(enrolled.Path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ns.Close() })
	if err := l.Enrol(ns, loader.PodConfig{}, nil); err != nil {
		b.Fatal(err)
	}
	podCg := podtest.NewCgroup(b, e.attach)
	e.base = podtest.StartProc(b, podtest.NewNetns(b), e.free)
	e.gated = podtest.StartProc(b, podtest.NewNetns(b), podCg)
	e.captured = podtest.StartProc(b, enrolled, podCg)
	e.local = podtest.StartProc(b, enrolled, podCg)
	return e
}

// interleave runs measure(p, k) for every process in rounds of k until
// each has done n, alternating processes so that a busy machine's
// background load hits all alike, and returns each process's median.
func interleave(b *testing.B, n, k int, procs []*podtest.Proc, measure func(p *podtest.Proc, k int) (time.Duration, error)) []time.Duration {
	b.Helper()
	res := make([][]time.Duration, len(procs))
	for done := 0; done < n; done += k {
		for i, p := range procs {
			d, err := measure(p, min(k, n-done))
			if err != nil {
				b.Fatal(err)
			}
			res[i] = append(res[i], d)
		}
	}
	out := make([]time.Duration, len(procs))
	for i, r := range res {
		slices.Sort(r)
		out[i] = r[len(r)/2]
	}
	return out
}

// BenchmarkConnect: connect() cycles (socket, connect, accept, close) in
// four pods, interleaved in rounds of 1,000: without the programs
// ("base"), under the programs in a netns that is not enrolled (the cost
// of the gate, "gated"), in an enrolled netns but to loopback, which is
// never captured (gate plus the pod's sk_lookup program, "enrolled-local"),
// and in an enrolled netns whose connect is captured (rewrite plus
// original destination recorded, "captured"). All end at a loopback
// listener of the same process. ns/connect-* is the median per round of
// the median cycle; b.N is connects per pod.
func BenchmarkConnect(b *testing.B) {
	e := newBenchEnv(b, false)
	procs := []*podtest.Proc{e.base, e.gated, e.local, e.captured}
	addrs := map[*podtest.Proc]string{e.base: "127.0.0.1:15001", e.gated: "127.0.0.1:15001", e.local: "127.0.0.1:15002", e.captured: "203.0.113.7:80"}
	measure := func(p *podtest.Proc, k int) (time.Duration, error) {
		port := 0
		if p == e.local {
			port = 15002 // beside the captured pod's 15001, same netns
		}
		_, median, err := p.ConnectAcceptLoopPort(addrs[p], port, k)
		return median, err
	}
	interleave(b, 300, 300, procs, measure) // warm up
	b.ResetTimer()
	r := interleave(b, b.N, 1000, procs, measure)
	b.ReportMetric(float64(r[0].Nanoseconds()), "ns/connect-base")
	b.ReportMetric(float64(r[1].Nanoseconds()), "ns/connect-gated")
	b.ReportMetric(float64(r[2].Nanoseconds()), "ns/connect-enrolled-local")
	b.ReportMetric(float64(r[3].Nanoseconds()), "ns/connect-captured")
}

// BenchmarkGetsockoptTax: getsockopt(SO_ERROR) — which Go's dialer calls
// after every connect — in a pod below the cgroup/getsockopt program
// (answering SO_ORIGINAL_DST) and in one without it, interleaved.
func BenchmarkGetsockoptTax(b *testing.B) {
	e := newBenchEnv(b, true)
	r := interleave(b, b.N, 10000, []*podtest.Proc{e.base, e.gated}, func(p *podtest.Proc, k int) (time.Duration, error) {
		return p.GetsockoptLoop(k)
	})
	b.ReportMetric(float64(r[0].Nanoseconds()), "ns/getsockopt-base")
	b.ReportMetric(float64(r[1].Nanoseconds()), "ns/getsockopt-with-program")
}

// BenchmarkOrigDstLookup: what ztunnel pays per accepted connection to
// learn its original destination: getsockopt(SO_ORIGINAL_DST) answered by
// the cgroup/getsockopt program, or a lookup in the wr_odst map handed over
// by nodeproto. Both in one process, alternating.
func BenchmarkOrigDstLookup(b *testing.B) {
	e := newBenchEnv(b, true)
	// The measuring process listens on the pod's 127.0.0.1:15001 itself.
	odst := podtest.NewNetns(b)
	ns, err := loader.OpenNetns(odst.Path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ns.Close(); e.l.Release(ns.Cookie) })
	if err := e.l.Enrol(ns, loader.PodConfig{}, nil); err != nil {
		b.Fatal(err)
	}
	p := podtest.StartProc(b, odst, podtest.NewCgroup(b, e.attach))
	var gs, mp []time.Duration
	for done := 0; done < b.N; done += 10000 {
		found, g, m, err := p.OrigDst("203.0.113.7:80", filepath.Join(e.pin, "wr_odst"), ns.Cookie, min(10000, b.N-done))
		if err != nil || found != "getsockopt=203.0.113.7:80 map=203.0.113.7:80" {
			b.Fatalf("lookup: %q %v", found, err)
		}
		gs, mp = append(gs, g), append(mp, m)
	}
	slices.Sort(gs)
	slices.Sort(mp)
	b.ReportMetric(float64(gs[len(gs)/2].Nanoseconds()), "ns/lookup-getsockopt")
	b.ReportMetric(float64(mp[len(mp)/2].Nanoseconds()), "ns/lookup-map")
}

// BenchmarkEnrolKernel: the kernel side of enrolling one pod (exclusion
// maps, inbound listener into the SOCKHASH, an sk_lookup program loaded
// for the pod's netns, attached and pinned, capture switched on) and of
// releasing it again. Medians.
func BenchmarkEnrolKernel(b *testing.B) {
	e := newBenchEnv(b, false)
	pod := podtest.NewNetns(b)
	ns, err := loader.OpenNetns(pod.Path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ns.Close() })
	ln, err := podtest.ListenIn(pod.File(), "tcp", "[::]:15006")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	cfg := loader.PodConfig{ExcludeOutboundPorts: []uint16{5432}, ExcludeOutboundCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")}}
	var enrol, release []time.Duration
	for i := 0; i < b.N; i++ {
		f, err := ln.File()
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := e.l.Enrol(ns, cfg, []*os.File{f}); err != nil {
			b.Fatal(err)
		}
		enrol = append(enrol, time.Since(t0))
		f.Close()
		t0 = time.Now()
		if err := e.l.Release(ns.Cookie); err != nil {
			b.Fatal(err)
		}
		release = append(release, time.Since(t0))
	}
	slices.Sort(enrol)
	slices.Sort(release)
	b.ReportMetric(float64(enrol[len(enrol)/2].Nanoseconds()), "ns/enrol")
	b.ReportMetric(float64(release[len(release)/2].Nanoseconds()), "ns/release")
}
