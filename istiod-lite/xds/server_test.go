package xds

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

const zt = "ztunnel~node-a"

func TestWildcardSubscriptionAndOneChangePushesOneResource(t *testing.T) {
	s := startServer(t, Options{Debounce: NoDebounce})
	if err := s.Set(TypeWorkload, workloads("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, s.addr, "")
	r.subscribe(zt, TypeWorkload, nil, nil)
	first := r.recv()
	if got, want := names(first), []string{"default/a", "default/b", "default/c"}; !slices.Equal(got, want) {
		t.Fatalf("initial push: got %v, want %v", got, want)
	}
	for _, res := range first.Resources {
		var w warrenv1.Workload
		if err := anypb.UnmarshalTo(res.Resource, &w, proto.UnmarshalOptions{}); err != nil {
			t.Fatal(err)
		}
		if res.Version != version(t, &w) || "default/"+w.Name != res.Name {
			t.Errorf("resource %s: version %s, content %s", res.Name, res.Version, w.Name)
		}
	}
	r.ack(first)

	// Setting the same content again changes nothing and pushes nothing.
	if err := s.Set(TypeWorkload, workloads("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	r.expectNone(100 * time.Millisecond)

	// One pod change is one resource.
	changed := workload("b", false)
	if err := s.Update(TypeWorkload, map[string]proto.Message{"default/b": changed}, nil); err != nil {
		t.Fatal(err)
	}
	resp := r.recv()
	if got := names(resp); !slices.Equal(got, []string{"default/b"}) || len(resp.RemovedResources) != 0 {
		t.Fatalf("after one change: got %v removed %v, want only default/b", got, resp.RemovedResources)
	}
	if resp.Resources[0].Version != version(t, changed) {
		t.Errorf("version %s, want %s", resp.Resources[0].Version, version(t, changed))
	}
	r.ack(resp)

	// A type with nothing in it still gets an (empty) first response.
	r.subscribe("", TypeAuthorization, nil, nil)
	if resp := r.recv(); resp.TypeUrl != TypeAuthorization || len(resp.Resources)+len(resp.RemovedResources) != 0 {
		t.Fatalf("empty type: got %v", resp)
	}
}

func TestDeleteSendsRemovedResources(t *testing.T) {
	s := startServer(t, Options{Debounce: NoDebounce})
	if err := s.Set(TypeWorkload, workloads("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, s.addr, "")
	r.subscribe(zt, TypeWorkload, nil, nil)
	r.ack(r.recv())

	if err := s.Update(TypeWorkload, nil, []string{"default/a", "default/nope"}); err != nil {
		t.Fatal(err)
	}
	resp := r.recv()
	if len(resp.Resources) != 0 || !slices.Equal(resp.RemovedResources, []string{"default/a"}) {
		t.Fatalf("delete: got %v removed %v", names(resp), resp.RemovedResources)
	}
	r.ack(resp)

	// Set computes removals itself.
	if err := s.Set(TypeWorkload, map[string]proto.Message{"default/c": workload("c", true), "default/d": workload("d", true)}); err != nil {
		t.Fatal(err)
	}
	resp = r.recv()
	if !slices.Equal(names(resp), []string{"default/d"}) || !slices.Equal(resp.RemovedResources, []string{"default/b"}) {
		t.Fatalf("set: got %v removed %v, want [default/d] removed [default/b]", names(resp), resp.RemovedResources)
	}
}

func TestNamedSubscription(t *testing.T) {
	s := startServer(t, Options{Debounce: NoDebounce})
	if err := s.Set(TypeWorkload, workloads("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, s.addr, "")
	r.subscribe(zt, TypeWorkload, []string{"default/a", "default/missing"}, nil)
	resp := r.recv()
	if !slices.Equal(names(resp), []string{"default/a"}) || !slices.Equal(resp.RemovedResources, []string{"default/missing"}) {
		t.Fatalf("named: got %v removed %v, want [default/a], removed [default/missing] (does not exist)", names(resp), resp.RemovedResources)
	}
	r.ack(resp)

	// Changes to names not subscribed are not sent.
	if err := s.Update(TypeWorkload, map[string]proto.Message{"default/b": workload("b", false)}, nil); err != nil {
		t.Fatal(err)
	}
	r.expectNone(100 * time.Millisecond)

	// Subscribing to more names sends just those.
	r.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: TypeWorkload, ResourceNamesSubscribe: []string{"default/b"}})
	resp = r.recv()
	if !slices.Equal(names(resp), []string{"default/b"}) || len(resp.RemovedResources) != 0 {
		t.Fatalf("subscribe b: got %v removed %v", names(resp), resp.RemovedResources)
	}
	r.ack(resp)

	// The missing one appears once it exists.
	if err := s.Update(TypeWorkload, workloads("missing"), nil); err != nil {
		t.Fatal(err)
	}
	resp = r.recv()
	if !slices.Equal(names(resp), []string{"default/missing"}) {
		t.Fatalf("created: got %v", names(resp))
	}
	r.ack(resp)

	// Unsubscribe: no more pushes for it, and no removal either (the
	// client forgets it by itself).
	r.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: TypeWorkload, ResourceNamesUnsubscribe: []string{"default/a"}})
	eventually(t, "server saw the unsubscribe", func() bool {
		return !slices.Contains(s.Syncz()[0].Types[TypeWorkload].Names, "default/a")
	})
	if err := s.Update(TypeWorkload, map[string]proto.Message{"default/a": workload("a", false)}, nil); err != nil {
		t.Fatal(err)
	}
	r.expectNone(100 * time.Millisecond)
	dump, err := s.ConfigDump(zt)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := dump.Types[TypeWorkload]["default/a"]; ok {
		t.Error("config_dump still lists an unsubscribed resource")
	}
	if got := len(dump.Types[TypeWorkload]); got != 2 {
		t.Errorf("config_dump: %d workloads, want 2 (b, missing)", got)
	}
}

func TestDebounceCoalescesBursts(t *testing.T) {
	const window = time.Second // the burst below takes microseconds; this leaves room for a loaded machine
	s := startServer(t, Options{Debounce: window})
	if err := s.Set(TypeWorkload, workloads("a")); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, s.addr, "")
	r.subscribe(zt, TypeWorkload, nil, nil)
	r.ack(r.recv())

	start := time.Now()
	var want []string
	for i := 0; i < 10; i++ {
		n := string(rune('b' + i))
		want = append(want, "default/"+n)
		if err := s.Update(TypeWorkload, workloads(n), nil); err != nil {
			t.Fatal(err)
		}
		// The same resource changed twice in the window is sent once,
		// in its last version.
		if err := s.Update(TypeWorkload, map[string]proto.Message{"default/a": workload("a", i%2 == 0)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	want = append(want, "default/a")
	slices.Sort(want)
	burst := time.Since(start)
	resp := r.recv()
	if elapsed := time.Since(start); elapsed < window*9/10 {
		t.Errorf("push after %s, before the %s window closed", elapsed, window)
	}
	if burst > window/2 {
		t.Logf("the burst itself took %s: a very loaded machine", burst)
	}
	if got := names(resp); !slices.Equal(got, want) {
		t.Fatalf("coalesced push: got %v, want %v", got, want)
	}
	if v := versions(resp)["default/a"]; v != version(t, workload("a", false)) {
		t.Errorf("default/a sent at %s, want its last version", v)
	}
	r.ack(resp)
	r.expectNone(window + 200*time.Millisecond)
}

func TestReconnectWithInitialVersionsGetsOnlyTheDiff(t *testing.T) {
	s := startServer(t, Options{Debounce: NoDebounce})
	if err := s.Set(TypeWorkload, workloads("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, s.addr, "")
	r.subscribe(zt, TypeWorkload, nil, nil)
	held := versions(r.recv())
	r.close()

	// While the proxy is away: a changes, b goes, d arrives.
	if err := s.Update(TypeWorkload, map[string]proto.Message{"default/a": workload("a", false), "default/d": workload("d", true)}, []string{"default/b"}); err != nil {
		t.Fatal(err)
	}
	held["default/gone-long-ago"] = "0123456789abcdef"

	r2 := dialRaw(t, s.addr, "")
	r2.subscribe(zt, TypeWorkload, nil, held)
	resp := r2.recv()
	if got := names(resp); !slices.Equal(got, []string{"default/a", "default/d"}) {
		t.Errorf("reconnect sent %v, want only [default/a default/d] (c is unchanged)", got)
	}
	removed := slices.Sorted(slices.Values(resp.RemovedResources))
	if !slices.Equal(removed, []string{"default/b", "default/gone-long-ago"}) {
		t.Errorf("reconnect removed %v, want [default/b default/gone-long-ago]", removed)
	}
	r2.ack(resp)
	// The unchanged resource counts as held: config_dump shows its content.
	eventually(t, "config_dump shows c", func() bool {
		d, err := s.ConfigDump(zt)
		return err == nil && d.Types[TypeWorkload]["default/c"].Resource != nil && len(d.Types[TypeWorkload]) == 3
	})
}

func TestNACKKeepsLastGoodAndIsVisible(t *testing.T) {
	s := startServer(t, Options{Debounce: NoDebounce})
	if err := s.Set(TypeWorkload, workloads("a", "b")); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, s.addr, "")
	r.subscribe(zt, TypeWorkload, nil, nil)
	first := r.recv()
	good := versions(first)["default/a"]
	r.ack(first)

	bad := workload("a", false)
	if err := s.Update(TypeWorkload, map[string]proto.Message{"default/a": bad}, nil); err != nil {
		t.Fatal(err)
	}
	resp := r.recv()
	r.nack(resp, "workload default/a: unusable address")

	eventually(t, "syncz shows the NACK", func() bool {
		st := s.Syncz()
		return len(st) == 1 && st[0].Types[TypeWorkload].Status == StatusNACKed
	})
	ts := s.Syncz()[0].Types[TypeWorkload]
	if ts.LastNACK == nil || !strings.Contains(ts.LastNACK.Error, "unusable address") || ts.NACKs != 1 || ts.ACKs != 1 {
		t.Fatalf("syncz type status: %+v", ts)
	}
	if !slices.Contains(ts.LastNACK.Resources, "default/a@"+version(t, bad)) {
		t.Errorf("NACK resources %v do not name the rejected version", ts.LastNACK.Resources)
	}
	dump, err := s.ConfigDump(zt)
	if err != nil {
		t.Fatal(err)
	}
	if v := dump.Types[TypeWorkload]["default/a"].Version; v != good {
		t.Errorf("config_dump: default/a at %s, want the last good %s", v, good)
	}

	// Another change: only that one is sent, the rejected one is not
	// forced on the proxy again.
	if err := s.Update(TypeWorkload, map[string]proto.Message{"default/b": workload("b", false)}, nil); err != nil {
		t.Fatal(err)
	}
	resp = r.recv()
	if got := names(resp); !slices.Equal(got, []string{"default/b"}) {
		t.Fatalf("after NACK: sent %v, want [default/b]", got)
	}
	r.ack(resp)
	// Back to the content the proxy kept (its last good version): nothing
	// to send.
	if err := s.Update(TypeWorkload, map[string]proto.Message{"default/a": workload("a", true)}, nil); err != nil {
		t.Fatal(err)
	}
	r.expectNone(100 * time.Millisecond)
	// A fixed version of the rejected resource is sent.
	fixed := workload("a", true)
	fixed.Zone = "z1"
	if err := s.Update(TypeWorkload, map[string]proto.Message{"default/a": fixed}, nil); err != nil {
		t.Fatal(err)
	}
	resp = r.recv()
	if got := names(resp); !slices.Equal(got, []string{"default/a"}) {
		t.Fatalf("fixed: sent %v", got)
	}
	r.ack(resp)
	eventually(t, "synced after the fix", func() bool {
		return s.Syncz()[0].Types[TypeWorkload].Status == StatusSynced
	})
}

func TestWaitForAck(t *testing.T) {
	s := startServer(t, Options{Debounce: NoDebounce})
	bundle := &warrenv1.TrustBundle{TrustDomain: "cluster.local", RootsPem: []string{"old"}}
	if err := s.Update(TypeTrustBundle, map[string]proto.Message{TrustBundleName: bundle}, nil); err != nil {
		t.Fatal(err)
	}
	// Two well-behaved proxies and one that never answers.
	var recs []*recorder
	for _, node := range []string{"node-a", "node-b"} {
		rec := newRecorder()
		c := runClient(t, clientOpts(s.addr, "ztunnel~"+node, rec, TypeTrustBundle))
		waitSynced(t, c)
		recs = append(recs, rec)
	}
	silent := dialRaw(t, s.addr, "")
	silent.subscribe("ztunnel~node-c", TypeTrustBundle, nil, nil)
	silent.ack(silent.recv())
	// A proxy not subscribed to the bundle is never waited for.
	other := dialRaw(t, s.addr, "")
	other.subscribe("ztunnel~node-d", TypeWorkload, nil, nil)
	other.recv()

	next := &warrenv1.TrustBundle{TrustDomain: "cluster.local", RootsPem: []string{"old", "new"}}
	if err := s.Update(TypeTrustBundle, map[string]proto.Message{TrustBundleName: next}, nil); err != nil {
		t.Fatal(err)
	}
	silent.recv() // received, never answered
	eventually(t, "the well-behaved proxies ACKed", func() bool {
		synced := 0
		for _, p := range s.Syncz() {
			if ts, ok := p.Types[TypeTrustBundle]; ok && ts.Status == StatusSynced {
				synced++
			}
		}
		return synced == 2
	})

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := s.WaitForAck(ctx, TypeTrustBundle, TrustBundleName, version(t, next))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "ztunnel~node-c") || strings.Contains(err.Error(), "node-a") {
		t.Fatalf("WaitForAck with a silent proxy: %v; want a deadline error naming only ztunnel~node-c", err)
	}
	for _, rec := range recs {
		if got := rec.get(TypeTrustBundle, TrustBundleName); !proto.Equal(got, next) {
			t.Errorf("a well-behaved proxy holds %v", got)
		}
	}

	// Once the silent proxy disconnects, nobody is missing.
	done := make(chan error, 1)
	go func() { done <- s.WaitForAck(context.Background(), TypeTrustBundle, TrustBundleName, "") }()
	select {
	case err := <-done:
		t.Fatalf("WaitForAck returned %v while node-c has not ACKed", err)
	case <-time.After(100 * time.Millisecond):
	}
	silent.close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WaitForAck after the silent proxy left: %v", err)
		}
	case <-time.After(timeout):
		t.Fatal("WaitForAck still waiting after the silent proxy disconnected")
	}

	// A newer bundle supersedes the awaited version.
	third := &warrenv1.TrustBundle{TrustDomain: "cluster.local", RootsPem: []string{"new"}}
	if err := s.Update(TypeTrustBundle, map[string]proto.Message{TrustBundleName: third}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitForAck(context.Background(), TypeTrustBundle, TrustBundleName, version(t, next)); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("WaitForAck of a replaced version: %v, want ErrSuperseded", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.WaitForAck(ctx, TypeTrustBundle, TrustBundleName, version(t, third)); err != nil {
		t.Fatalf("WaitForAck of the third bundle: %v", err)
	}
}

func TestUpdateValidation(t *testing.T) {
	s := startServer(t, Options{})
	for name, tc := range map[string]struct {
		typeURL string
		ups     map[string]proto.Message
		rems    []string
		want    string
	}{
		"wrong type":   {TypeService, workloads("a"), nil, "message is a type.googleapis.com/warren.v1.Workload"},
		"empty name":   {TypeWorkload, map[string]proto.Message{"": workload("a", true)}, nil, "empty resource name"},
		"nil message":  {TypeWorkload, map[string]proto.Message{"x": nil}, nil, "nil message"},
		"both":         {TypeWorkload, workloads("a"), []string{"default/a"}, "both upserted and removed"},
		"no type URL":  {"", workloads("a"), nil, "empty type URL"},
		"nil workload": {TypeWorkload, map[string]proto.Message{"y": (*warrenv1.Workload)(nil)}, nil, "nil message"},
	} {
		err := s.Update(tc.typeURL, tc.ups, tc.rems)
		if err == nil || !strings.HasPrefix(err.Error(), "xds: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an xds: error containing %q", name, err, tc.want)
		}
	}
	if got := s.Names(TypeWorkload); len(got) != 0 {
		t.Errorf("a refused update stored %v", got)
	}
}

func TestStateOfTheWorldIsRefused(t *testing.T) {
	s := startServer(t, Options{})
	r := dialRaw(t, s.addr, "")
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(r.conn).StreamAggregatedResources(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "delta") {
		t.Fatalf("SotW stream: %v, want Unimplemented pointing at delta xDS", err)
	}
}

func TestNACKOfManyIsolatesTheBadResource(t *testing.T) {
	s := startServer(t, Options{Debounce: NoDebounce})
	var all []string
	for i := 0; i < 16; i++ {
		all = append(all, string(rune('a'+i)))
	}
	if err := s.Set(TypeWorkload, workloads(all...)); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, s.addr, "")
	r.subscribe(zt, TypeWorkload, nil, nil)
	// This proxy refuses any response carrying default/k.
	responses := 0
	deadline := time.After(timeout)
	for done := false; !done; {
		select {
		case resp := <-r.resps:
			responses++
			if slices.Contains(names(resp), "default/k") {
				r.nack(resp, "default/k: bad")
			} else {
				r.ack(resp)
			}
		case <-time.After(20 * time.Millisecond):
			done = s.quiescent()
		case <-deadline:
			t.Fatalf("still exchanging after %s (%d responses)", timeout, responses)
		}
	}
	// 1 + at most 2 per halving level (16 → 8 → 4 → 2 → 1).
	if responses > 9 {
		t.Errorf("%d responses to isolate one bad resource among 16", responses)
	}
	d, err := s.ConfigDump(zt)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(d.Types[TypeWorkload]); got != 15 {
		t.Errorf("proxy holds %d workloads, want the 15 good ones", got)
	}
	if _, ok := d.Types[TypeWorkload]["default/k"]; ok {
		t.Error("the rejected resource counts as held")
	}
	st := s.Syncz()[0].Types[TypeWorkload]
	if st.Status != StatusNACKed || !slices.Equal(st.LastNACK.Resources, []string{"default/k@" + version(t, workload("k", true))}) {
		t.Errorf("syncz: %s, last NACK %+v", st.Status, st.LastNACK)
	}
}

func TestRunnerServesPlaintextAndStopsStreams(t *testing.T) {
	s, err := NewServer(Options{AllowUnauthenticated: true, ListenAddr: "127.0.0.1:0", Debounce: NoDebounce})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "xds" {
		t.Errorf("Name = %q", s.Name())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Start(ctx) }()
	var addr string
	select {
	case a := <-s.Listening():
		addr = a.String()
	case <-time.After(timeout):
		t.Fatal("not listening")
	}
	if err := s.Update(TypeWorkload, workloads("a"), nil); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, addr, "")
	r.subscribe(zt, TypeWorkload, nil, nil)
	if got := names(r.recv()); !slices.Equal(got, []string{"default/a"}) {
		t.Fatalf("got %v", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
	case <-time.After(timeout):
		t.Fatal("Start did not return")
	}
	if err := r.streamErr(); status.Code(err) != codes.Unavailable {
		t.Fatalf("stream after shutdown: %v", err)
	}
	eventually(t, "no proxies left", func() bool { return len(s.Proxies()) == 0 })
	// The store outlives the listener: Update still works after shutdown.
	if err := s.Update(TypeWorkload, workloads("b"), nil); err != nil {
		t.Fatal(err)
	}
	if got := s.Names(TypeWorkload); !slices.Equal(got, []string{"default/a", "default/b"}) {
		t.Errorf("store after shutdown: %v", got)
	}
}
