package translate_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// BenchmarkTranslateFull translates a 10,000-pod / 2,000-Service /
// 2,000-HTTPRoute mesh from scratch (index build included).
func BenchmarkTranslateFull(b *testing.B) {
	snap := synthetic(100, 20, 5)
	b.ReportAllocs()
	for b.Loop() {
		out := translate.Translate(model.NewIndex(snap))
		if len(out.Workloads) != 10000 || len(out.L7Services) != 2000 {
			b.Fatalf("got %d workloads, %d L7 services", len(out.Workloads), len(out.L7Services))
		}
	}
}

// TestTranslateScale is the budget as a test: the full translation
// of the synthetic 10k/2k/2k mesh stays under 1 s and 500 MB of heap (a
// loose bound on 2 loaded cores; `make bench` reports the real figures).
func TestTranslateScale(t *testing.T) {
	if testing.Short() {
		t.Skip("scale test skipped in -short mode")
	}
	snap := synthetic(100, 20, 5)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	out := translate.Translate(model.NewIndex(snap))
	el := time.Since(start)
	runtime.ReadMemStats(&after)
	if len(out.Workloads) != 10000 || len(out.Services) != 2100 || len(out.L7Services) != 2000 {
		t.Fatalf("got %d workloads, %d services, %d L7 services", len(out.Workloads), len(out.Services), len(out.L7Services))
	}
	if el > 3*time.Second {
		t.Fatalf("full translation took %s (budget 1 s; 3 s allowed on a loaded CI machine)", el)
	}
	if heap := after.HeapAlloc; heap > 500<<20 {
		t.Fatalf("heap after translation %d MB, budget 500 MB", heap>>20)
	}
	t.Logf("full translation: %s, heap %d MB", el, after.HeapAlloc>>20)
}

// BenchmarkIncrementalPod is one pod change in the 10k-pod mesh: index
// rebuild plus that pod's Workload.
func BenchmarkIncrementalPod(b *testing.B) {
	snap := synthetic(100, 20, 5)
	var inc translate.Incremental
	inc.Translate(snap, nil)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		p := snap.Pods[i%len(snap.Pods)].DeepCopy()
		p.Labels["rev"] = string(rune('a' + i%26))
		snap.Pods[i%len(snap.Pods)] = p
		i++
		if _, scope := inc.Translate(snap, []translate.Change{{Kind: "Pod", Namespace: p.Namespace, Name: p.Name}}); scope != translate.ScopePods {
			b.Fatal(scope)
		}
	}
}

// BenchmarkIncrementalRoute is one HTTPRoute change in the same mesh: all
// route tables and statuses, reusing Workloads, Services and policies.
func BenchmarkIncrementalRoute(b *testing.B) {
	snap := synthetic(100, 20, 5)
	var inc translate.Incremental
	inc.Translate(snap, nil)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := snap.HTTPRoutes[i%len(snap.HTTPRoutes)].DeepCopy()
		r.Generation++
		snap.HTTPRoutes[i%len(snap.HTTPRoutes)] = r
		i++
		if _, scope := inc.Translate(snap, []translate.Change{{Kind: "HTTPRoute", Namespace: r.Namespace, Name: r.Name}}); scope != translate.ScopeRoutes {
			b.Fatal(scope)
		}
	}
}
