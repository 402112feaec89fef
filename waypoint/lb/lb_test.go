package lb

import (
	"net/http/httptest"
	"testing"
	"time"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/waypoint/upstream"
)

func workloads() []*warrenv1.Workload {
	svc := func(port, target uint32) map[string]*warrenv1.PortList {
		return map[string]*warrenv1.PortList{"shop/echo": {Ports: []*warrenv1.PortMapping{{ServicePort: port, TargetPort: target}}}}
	}
	return []*warrenv1.Workload{
		{Uid: "shop/b", Namespace: "shop", Addresses: []string{"10.0.0.2"}, Ready: true, Services: svc(80, 8080), Tunnel: warrenv1.TunnelProtocol_TUNNEL_HBONE, Identity: "spiffe://td/ns/shop/sa/b", WorkloadName: "echo"},
		{Uid: "shop/a", Namespace: "shop", Addresses: []string{"10.0.0.1", "fd00::1"}, Ready: true, Services: svc(80, 9090)},
		{Uid: "shop/unready", Addresses: []string{"10.0.0.3"}, Ready: false, Services: svc(80, 8080)},
		{Uid: "shop/other-port", Addresses: []string{"10.0.0.4"}, Ready: true, Services: svc(81, 8080)},
		{Uid: "shop/other-svc", Addresses: []string{"10.0.0.5"}, Ready: true},
	}
}

func TestEndpoints(t *testing.T) {
	reg := NewRegistry(Outlier{})
	keep := map[upstream.Endpoint]bool{}
	s := Endpoints(reg, "shop/echo", 80, workloads(), keep)
	if len(s.Endpoints) != 2 || s.Endpoints[0].Addr != "10.0.0.1:9090" || s.Endpoints[1].Addr != "10.0.0.2:8080" {
		t.Fatalf("%+v", s.Endpoints)
	}
	b := s.Endpoints[1]
	if !b.HBONE || b.Identity != "spiffe://td/ns/shop/sa/b" || b.Workload != "shop/b" || b.WorkloadName != "echo" || len(keep) != 2 {
		t.Fatalf("%+v", b)
	}
	// State survives a recompile.
	b.active.Add(3)
	s2 := Endpoints(reg, "shop/echo", 80, workloads(), nil)
	if s2.Find("10.0.0.2:8080").Active() != 3 {
		t.Fatal("state lost across snapshots")
	}
	reg.Retain(map[upstream.Endpoint]bool{})
	if Endpoints(reg, "shop/echo", 80, workloads(), nil).Find("10.0.0.2:8080").Active() != 0 {
		t.Fatal("Retain kept dropped state")
	}
}

func TestPickPowerOfTwo(t *testing.T) {
	reg := NewRegistry(Outlier{})
	s := Endpoints(reg, "shop/echo", 80, workloads(), nil)
	busy, idle := s.Endpoints[0], s.Endpoints[1]
	busy.active.Store(10)
	for range 100 {
		if s.Pick(time.Now(), nil) != idle {
			t.Fatal("P2C with two endpoints picks the less loaded one")
		}
	}
	if s.Pick(time.Now(), []*Endpoint{idle}) != busy {
		t.Fatal("avoid skips tried endpoints")
	}
	if s.Pick(time.Now(), []*Endpoint{idle, busy}) == nil {
		t.Fatal("when all were tried, pick anyway")
	}
	var empty *Set
	if empty.Pick(time.Now(), nil) != nil || (&Set{}).Pick(time.Now(), nil) != nil {
		t.Fatal("empty")
	}
	// Many equal endpoints: spread.
	var eps []*Endpoint
	for i := range 10 {
		eps = append(eps, reg.Get(upstream.Endpoint{Addr: string(rune('a' + i))}))
	}
	s3 := &Set{Endpoints: eps}
	seen := map[*Endpoint]bool{}
	for range 500 {
		seen[s3.Pick(time.Now(), nil)] = true
	}
	if len(seen) != 10 {
		t.Fatalf("spread over %d of 10", len(seen))
	}
}

func TestOutlierEjection(t *testing.T) {
	reg := NewRegistry(Outlier{ConsecutiveFailures: 2, BaseEjection: time.Second, MaxEjection: 3 * time.Second})
	s := Endpoints(reg, "shop/echo", 80, workloads(), nil)
	bad, good := s.Endpoints[0], s.Endpoints[1]
	now := time.Unix(100, 0)
	if bad.ReportConnect(false, now) || !bad.ReportConnect(false, now) {
		t.Fatal("ejected on the 2nd consecutive failure")
	}
	for range 50 {
		if s.Pick(now, nil) != good {
			t.Fatal("ejected endpoint picked")
		}
	}
	if !bad.Ejected(now.Add(999*time.Millisecond)) || bad.Ejected(now.Add(time.Second)) {
		t.Fatal("first ejection lasts BaseEjection")
	}
	// Second ejection lasts twice as long, capped at MaxEjection.
	now = now.Add(2 * time.Second)
	bad.ReportConnect(false, now)
	bad.ReportConnect(false, now)
	if !bad.Ejected(now.Add(1999*time.Millisecond)) || bad.Ejected(now.Add(2*time.Second)) {
		t.Fatal("second ejection 2s")
	}
	for range 5 {
		now = now.Add(10 * time.Second)
		bad.ReportConnect(false, now)
		bad.ReportConnect(false, now)
	}
	if bad.Ejected(now.Add(3 * time.Second)) {
		t.Fatal("ejection capped at MaxEjection")
	}
	// A success resets the count.
	now = now.Add(time.Minute)
	bad.ReportConnect(false, now)
	bad.ReportConnect(true, now)
	if bad.ReportConnect(false, now) {
		t.Fatal("success resets consecutive failures")
	}
	// All ejected: panic mode still picks one.
	good.ReportConnect(false, now)
	good.ReportConnect(false, now)
	bad.ReportConnect(false, now)
	if s.Pick(now, nil) == nil {
		t.Fatal("panic mode")
	}
	off := NewRegistry(Outlier{ConsecutiveFailures: -1}).Get(upstream.Endpoint{Addr: "x"})
	for range 10 {
		if off.ReportConnect(false, now) {
			t.Fatal("disabled")
		}
	}
}

func TestPickWeighted(t *testing.T) {
	if PickWeighted(nil) != -1 || PickWeighted([]uint32{0, 0}) != -1 || PickWeighted([]uint32{5}) != 0 {
		t.Fatal("edge cases")
	}
	n := [3]int{}
	for range 10000 {
		n[PickWeighted([]uint32{70, 0, 30})]++
	}
	if n[1] != 0 || n[0] < 6700 || n[0] > 7300 {
		t.Fatalf("70/0/30: %v", n)
	}
}

func TestSession(t *testing.T) {
	now := time.Unix(10000, 0)
	cookie := &warrenv1.SessionPersistence{SessionName: "sid", AbsoluteTimeoutMs: 60000, IdleTimeoutMs: 10000, Permanent: true}
	v := EncodeSession("10.0.0.1:80", now.Add(-30*time.Second), now.Add(-5*time.Second))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", "sid="+v)
	s, ok := ReadSession(r, cookie, now)
	if !ok || s.Addr != "10.0.0.1:80" {
		t.Fatalf("%+v %v", s, ok)
	}
	if _, ok := ReadSession(r, cookie, now.Add(6*time.Second)); ok {
		t.Fatal("idle timeout")
	}
	if _, ok := ReadSession(r, &warrenv1.SessionPersistence{SessionName: "sid", AbsoluteTimeoutMs: 20000}, now); ok {
		t.Fatal("absolute timeout")
	}
	for _, bad := range []string{"!!!", EncodeSession("", now, now), "YWJj"} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", "sid="+bad)
		if _, ok := ReadSession(r, cookie, now); ok {
			t.Fatalf("accepted %q", bad)
		}
	}
	w := httptest.NewRecorder()
	WriteSession(w.Header(), cookie, v)
	if got := w.Header().Get("Set-Cookie"); got != "sid="+v+"; Path=/; Max-Age=60; HttpOnly" {
		t.Fatalf("Set-Cookie %q", got)
	}
	hdr := &warrenv1.SessionPersistence{Type: warrenv1.SessionPersistence_HEADER}
	WriteSession(w.Header(), hdr, v)
	r = httptest.NewRequest("GET", "/", nil)
	r.Header.Set(DefaultSessionName, w.Header().Get(DefaultSessionName))
	if s, ok := ReadSession(r, hdr, now); !ok || s.Addr != "10.0.0.1:80" {
		t.Fatal("header session")
	}
}
