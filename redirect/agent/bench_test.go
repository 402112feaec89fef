package agent_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/warren-mesh/warren/redirect/agent"
)

// BenchmarkEnrol (root): the real agent, a running pod, and a namespace
// label flipped back and forth. ns/enrol is the time from the label
// change reaching the controller (what an informer event handler calls)
// until capture is on for the pod — ztunnel handed the pod over nodeproto
// and answered with its listener, sk_lookup program loaded and attached,
// maps written; the next connect is captured, which every iteration
// checks. ns/release is the way back. Medians; Kubernetes watch latency
// is not included.
func BenchmarkEnrol(b *testing.B) {
	w := newPodWorld(b)
	s := startStack(b, w, nil)
	startZtunnel(b, w, false)
	plain := w.namespace(nil)
	amb := w.namespace(map[string]string{agent.LabelDataplaneMode: agent.ModeAmbient})
	s.c.UpsertNamespace(plain)
	s.c.UpsertPod(w.kubePod(nil, nil))
	s.c.SetSynced()
	if resp, err := s.c.CNIAdd(context.Background(), w.cniAdd()); err != nil || resp.Enrolled {
		b.Fatalf("CNIAdd: %+v %v", resp, err)
	}
	wait := func(want bool) time.Duration {
		t0 := time.Now()
		for s.a.Enrolled(w.uid) != want {
			if time.Since(t0) > 10*time.Second {
				b.Fatalf("enrolled != %v after 10s: %+v", want, s.a.Status())
			}
			time.Sleep(20 * time.Microsecond)
		}
		return time.Since(t0)
	}
	var enrol, release []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.c.UpsertNamespace(amb)
		enrol = append(enrol, wait(true))
		b.StopTimer()
		if r := w.app.Dial("tcp", w.remote()); r.Data != "ztunnel-outbound orig="+w.remote()+" pod="+w.uid {
			b.Fatalf("not captured after enrol: %v", r)
		}
		b.StartTimer()
		s.c.UpsertNamespace(plain)
		release = append(release, wait(false))
		b.StopTimer()
		if r := w.app.Dial("tcp", w.remote()); r.Err != "" || r.Data[:6] != "remote" {
			b.Fatalf("still captured after release: %v", r)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(median(enrol).Nanoseconds()), "ns/enrol")
	b.ReportMetric(float64(median(release).Nanoseconds()), "ns/release")
}

// BenchmarkCNIAdd (root): what the plugin's ADD costs a pod sandbox in an
// enrolled namespace (agent decision, ztunnel handover, capture on).
func BenchmarkCNIAdd(b *testing.B) {
	w := newPodWorld(b)
	s := startStack(b, w, nil)
	startZtunnel(b, w, false)
	s.c.UpsertNamespace(w.namespace(map[string]string{agent.LabelDataplaneMode: agent.ModeAmbient}))
	s.c.UpsertPod(w.kubePod(nil, nil))
	s.c.SetSynced()
	waitUntil(b, s.srv.Connected)
	ctx := context.Background()
	var adds []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		resp, err := s.c.CNIAdd(ctx, w.cniAdd())
		if err != nil || !resp.Enrolled {
			b.Fatalf("CNIAdd: %+v %v", resp, err)
		}
		adds = append(adds, time.Since(t0))
		b.StopTimer()
		if err := s.c.CNIDel(ctx, w.cniAdd()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(median(adds).Nanoseconds()), "ns/cni-add")
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
