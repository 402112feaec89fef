package xds

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/xds/client"
)

func TestClientKeepsConfigWhileServerDownAndResyncs(t *testing.T) {
	s := startServer(t, Options{Debounce: NoDebounce})
	if err := s.Set(TypeWorkload, workloads("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	c := runClient(t, clientOpts(s.addr, zt, rec, TypeWorkload))
	waitSynced(t, c)
	if first := rec.next(t); len(first.upserts) != 3 {
		t.Fatalf("initial: %d upserts", len(first.upserts))
	}
	before := c.Versions(TypeWorkload)

	addr := s.addr
	s.down()
	eventually(t, "client notices the control plane is gone", func() bool { return !c.State().Connected })
	// Nothing is removed while the control plane is down.
	rec.expectNone(t, 300*time.Millisecond)
	if got := rec.names(TypeWorkload); len(got) != 3 {
		t.Fatalf("config while down: %v", got)
	}
	if st := c.State(); st.LastError == "" {
		t.Error("state has no last error while disconnected")
	}

	// Changes while it is away: b changes, c goes.
	if err := s.Update(TypeWorkload, map[string]proto.Message{"default/b": workload("b", false)}, []string{"default/c"}); err != nil {
		t.Fatal(err)
	}
	s.serve(t, addr)
	got := rec.next(t)
	if len(got.upserts) != 1 || got.upserts["default/b"] == nil || !slices.Equal(got.removes, []string{"default/c"}) {
		t.Fatalf("resync: upserts %v removes %v; want only default/b and removal of default/c", keys(got.upserts), got.removes)
	}
	eventually(t, "reconnected", func() bool { return c.State().Connected })
	after := c.Versions(TypeWorkload)
	if after["default/a"] != before["default/a"] || after["default/b"] == before["default/b"] || after["default/c"] != "" {
		t.Errorf("versions before %v after %v", before, after)
	}
	if st := c.State(); st.Connects < 2 || st.LastError != "" {
		t.Errorf("state after resync: %+v", st)
	}
}

func TestClientNACKKeepsPreviousState(t *testing.T) {
	s := startServer(t, Options{Debounce: NoDebounce})
	if err := s.Set(TypeWorkload, workloads("a", "b")); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	rec.reject = func(_ string, ups map[string]proto.Message) error {
		for _, m := range ups {
			if w := m.(*warrenv1.Workload); w.Zone == "bad" {
				return fmt.Errorf("workload %s: zone %q is not allowed", w.Name, w.Zone)
			}
		}
		return nil
	}
	c := runClient(t, clientOpts(s.addr, zt, rec, TypeWorkload))
	waitSynced(t, c)
	rec.next(t)
	good := c.Versions(TypeWorkload)

	bad := workload("a", true)
	bad.Zone = "bad"
	if err := s.Update(TypeWorkload, map[string]proto.Message{"default/a": bad, "default/b": workload("b", false)}, nil); err != nil {
		t.Fatal(err)
	}
	// The response with both is refused as a whole; the server then offers
	// each again on its own, so b's good change gets through while a stays
	// at its last good version.
	eventually(t, "b's change applied after the split", func() bool {
		w, _ := rec.get(TypeWorkload, "default/b").(*warrenv1.Workload)
		return w != nil && !w.Ready
	})
	eventually(t, "server sees a NACKed", func() bool {
		st := s.Syncz()
		return len(st) == 1 && st[0].Types[TypeWorkload].Status == StatusNACKed && st[0].Types[TypeWorkload].PendingResponses == 0
	})
	if v := c.Versions(TypeWorkload); v["default/a"] != good["default/a"] || v["default/b"] != version(t, workload("b", false)) {
		t.Errorf("client versions after NACK %v; want a at %s", v, good["default/a"])
	}
	if w := rec.get(TypeWorkload, "default/a").(*warrenv1.Workload); w.Zone == "bad" {
		t.Error("handler holds the rejected resource")
	}
	ts := c.State().Types[TypeWorkload]
	if ts.NACKs != 2 || !strings.Contains(ts.LastNACK, `zone "bad"`) {
		t.Errorf("client type state %+v; want 2 NACKs (the pair, then a alone)", ts)
	}
	st := s.Syncz()[0].Types[TypeWorkload]
	if st.LastNACK == nil || !strings.Contains(st.LastNACK.Error, `zone "bad"`) || !slices.Equal(st.LastNACK.Resources, []string{"default/a@" + version(t, bad)}) {
		t.Errorf("syncz last NACK should name only the culprit: %+v", st.LastNACK)
	}
	// The fix is accepted and the proxy is in sync again.
	if err := s.Update(TypeWorkload, map[string]proto.Message{"default/a": workload("a", false)}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the fix applied", func() bool {
		w, _ := rec.get(TypeWorkload, "default/a").(*warrenv1.Workload)
		return w != nil && !w.Ready && w.Zone == ""
	})
	eventually(t, "synced", func() bool { return s.Syncz()[0].Types[TypeWorkload].Status == StatusSynced })
}

func TestClientExplicitSubscriptions(t *testing.T) {
	s := startServer(t, Options{Debounce: NoDebounce})
	if err := s.Set(TypeWorkload, workloads("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	c := runClient(t, client.Options{Address: s.addr, NodeID: zt, Names: map[string][]string{TypeWorkload: {"default/a"}}, Handler: rec})
	waitSynced(t, c)
	if got := rec.names(TypeWorkload); !slices.Equal(got, []string{"default/a"}) {
		t.Fatalf("explicit: %v", got)
	}
	if err := c.Subscribe(TypeWorkload, "default/b"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b arrives", func() bool { return len(rec.names(TypeWorkload)) == 2 })
	if err := c.Unsubscribe(TypeWorkload, "default/a"); err != nil {
		t.Fatal(err)
	}
	if got := rec.names(TypeWorkload); !slices.Equal(got, []string{"default/b"}) {
		t.Fatalf("after unsubscribe: %v", got)
	}
	eventually(t, "server dropped a", func() bool {
		d, err := s.ConfigDump(zt)
		return err == nil && len(d.Types[TypeWorkload]) == 1
	})
	// A new type on the live stream, wildcard.
	if err := s.Set(TypeService, map[string]proto.Message{"default/svc": &warrenv1.Service{Name: "svc", Namespace: "default"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(TypeService); err != nil {
		t.Fatal(err)
	}
	eventually(t, "service arrives", func() bool { return len(rec.names(TypeService)) == 1 })
	st := c.State()
	if !st.Types[TypeService].Wildcard || st.Types[TypeWorkload].Wildcard || !slices.Equal(st.Types[TypeWorkload].Names, []string{"default/b"}) {
		t.Errorf("client state %+v", st.Types)
	}
}

func TestScopeWaypointSeesOnlyItsL7Services(t *testing.T) {
	s := startServer(t, Options{Debounce: NoDebounce})
	l7 := func(name, waypoint string) *warrenv1.L7Service {
		return &warrenv1.L7Service{Name: name, Namespace: "shop", Hostname: name + ".shop.svc.cluster.local", Waypoint: waypoint}
	}
	if err := s.Set(TypeL7Service, map[string]proto.Message{
		"shop/cart":    l7("cart", "shop/wp1"),
		"shop/orders":  l7("orders", "shop/wp1"),
		"shop/billing": l7("billing", "shop/wp2"),
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Set(TypeWorkload, workloads("a")); err != nil {
		t.Fatal(err)
	}
	wp1, wp2, ztr := newRecorder(), newRecorder(), newRecorder()
	waitSynced(t, runClient(t, clientOpts(s.addr, "waypoint~shop/wp1~wp1-0", wp1, TypeL7Service, TypeWorkload)))
	waitSynced(t, runClient(t, clientOpts(s.addr, "waypoint~shop/wp2~wp2-0", wp2, TypeL7Service)))
	waitSynced(t, runClient(t, clientOpts(s.addr, zt, ztr, TypeL7Service, TypeWorkload)))
	if got := wp1.names(TypeL7Service); !slices.Equal(got, []string{"shop/cart", "shop/orders"}) {
		t.Errorf("wp1 L7Services: %v", got)
	}
	if got := wp2.names(TypeL7Service); !slices.Equal(got, []string{"shop/billing"}) {
		t.Errorf("wp2 L7Services: %v", got)
	}
	if got := ztr.names(TypeL7Service); len(got) != 0 {
		t.Errorf("ztunnel got L7Services %v", got)
	}
	if got := wp1.names(TypeWorkload); len(got) != 1 {
		t.Errorf("waypoint workloads (its endpoints): %v", got)
	}

	// cart moves to wp2: removed from wp1, added to wp2.
	if err := s.Update(TypeL7Service, map[string]proto.Message{"shop/cart": l7("cart", "shop/wp2")}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "cart moved", func() bool {
		return slices.Equal(wp1.names(TypeL7Service), []string{"shop/orders"}) &&
			slices.Equal(wp2.names(TypeL7Service), []string{"shop/billing", "shop/cart"})
	})
	if got := ztr.names(TypeL7Service); len(got) != 0 {
		t.Errorf("ztunnel got L7Services %v", got)
	}
}

func TestCustomScopeAndRescope(t *testing.T) {
	var mu sync.Mutex
	visible := map[string]bool{"default/a": true}
	scope := func(p *Proxy, typeURL, name string, _ proto.Message) bool {
		mu.Lock()
		defer mu.Unlock()
		return p.Node.Node != "node-a" || visible[name]
	}
	s := startServer(t, Options{Debounce: NoDebounce, Scope: scope})
	if err := s.Set(TypeWorkload, workloads("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	a, b := newRecorder(), newRecorder()
	waitSynced(t, runClient(t, clientOpts(s.addr, zt, a, TypeWorkload)))
	waitSynced(t, runClient(t, clientOpts(s.addr, "ztunnel~node-b", b, TypeWorkload)))
	if got := a.names(TypeWorkload); !slices.Equal(got, []string{"default/a"}) {
		t.Fatalf("scoped: %v", got)
	}
	a.next(t)
	b.next(t)

	mu.Lock()
	visible = map[string]bool{"default/b": true, "default/c": true}
	mu.Unlock()
	s.Rescope(func(p *Proxy) bool { return p.Node.Node == "node-a" })
	call := a.next(t)
	if !slices.Equal(keys(call.upserts), []string{"default/b", "default/c"}) || !slices.Equal(call.removes, []string{"default/a"}) {
		t.Fatalf("rescope: upserts %v removes %v", keys(call.upserts), call.removes)
	}
	b.expectNone(t, 100*time.Millisecond)
}

func TestDebugEndpointsAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := startServer(t, Options{Debounce: NoDebounce, Registerer: reg})
	if err := s.Set(TypeWorkload, workloads("a", "b")); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	waitSynced(t, runClient(t, clientOpts(s.addr, zt, rec, TypeWorkload)))
	if err := s.Update(TypeWorkload, map[string]proto.Message{"default/a": workload("a", false)}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "synced", func() bool {
		st := s.Syncz()
		return len(st) == 1 && st[0].Types[TypeWorkload].Status == StatusSynced && st[0].Types[TypeWorkload].ACKs == 2
	})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func(path string, code int, into any) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != code {
			t.Fatalf("%s: status %d, want %d", path, resp.StatusCode, code)
		}
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	var syncz []ProxyStatus
	get("/debug/syncz", http.StatusOK, &syncz)
	if len(syncz) != 1 || syncz[0].Proxy != zt || syncz[0].Kind != "ztunnel" {
		t.Fatalf("syncz: %+v", syncz)
	}
	ts := syncz[0].Types[TypeWorkload]
	if !ts.Wildcard || ts.Resources != 2 || ts.Version != ts.DesiredVersion || ts.LastSentResources != 1 || ts.LastSentBytes == 0 || ts.LastACK.IsZero() || ts.Pushes != 2 {
		t.Errorf("syncz type: %+v", ts)
	}
	var dump ConfigDump
	get("/debug/config_dump?proxy="+zt, http.StatusOK, &dump)
	var w warrenv1.Workload
	dr := dump.Types[TypeWorkload]["default/a"]
	if err := jsonToProto(dr.Resource, &w); err != nil || w.Ready || dr.Version != version(t, workload("a", false)) {
		t.Errorf("config_dump default/a: %s (%v)", dr.Resource, err)
	}
	var bad map[string]any
	get("/debug/config_dump", http.StatusBadRequest, &bad)
	get("/debug/config_dump?proxy=ztunnel~nobody", http.StatusNotFound, &bad)
	if !strings.Contains(fmt.Sprint(bad["proxies"]), zt) {
		t.Errorf("404 does not list the connected proxies: %v", bad)
	}
	var st Status
	get("/debug/status", http.StatusOK, &st)
	if st.Connected != 1 || st.ByKind["ztunnel"] != 1 || st.Resources[TypeWorkload] != 2 || st.States[StatusSynced] != 1 || st.Pushes != 2 || st.PushBytes == 0 || st.Debounce != "none" {
		t.Errorf("status: %+v", st)
	}

	for name, want := range map[string]float64{"pilot_xds": 1, "pilot_xds_pushes": 2, "warren_xds_acks_total": 2, "pilot_proxy_convergence_time": 1} {
		if got := metricValue(t, reg, name, "", ""); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := metricValue(t, reg, "warren_xds_push_bytes_total", "type", "Workload"); got != float64(st.PushBytes) {
		t.Errorf("bytes metric %v, status %d", got, st.PushBytes)
	}
}

func keys(m map[string]proto.Message) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func jsonToProto(b []byte, m proto.Message) error {
	if len(b) == 0 {
		return errors.New("empty")
	}
	return protojson.Unmarshal(b, m)
}
