package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/xds"
	"github.com/warren-mesh/warren/ztunnel/hbone"
)

// TestFullPath runs the waypoint against istiod-lite (file mode pieces:
// TLS xDS + CA with bootstrap tokens) and stand-in ztunnels on loopback:
// client (SVID of its namespace) → HBONE → waypoint → HBONE → stand-in
// answering as the pod's identity → the pod's HTTP server.
func TestFullPath(t *testing.T) {
	n := newNet24()
	cp := startControlPlane(t, meshYAML(n, 90, 10))

	startApp(t, "echo-v1", n.ip(hostV1))
	v2 := startApp(t, "echo-v2", n.ip(hostV2))
	startApp(t, "bad", n.ip(hostBad))
	startApp(t, "legacy", n.ip(hostLegacy))
	port, lns := listenAll(t, n.ip(hostV1), n.ip(hostV2), n.ip(hostBad))
	sV1 := startStandIn(t, cp, lns[0], echoID)
	sV2 := startStandIn(t, cp, lns[1], echoID)
	sBad := startStandIn(t, cp, lns[2], otherID) // bad-0 runs as .../sa/bad

	accessLog, logs := &syncBuf{}, &syncBuf{}
	level := new(slog.LevelVar)
	p, err := New(Options{
		GatewayName: "waypoint", GatewayNamespace: "shop", For: "all", Identity: waypointID, PodName: "waypoint-0",
		XDSAddress: cp.addr, CAAddress: cp.addr, TokenFile: cp.tokenFile, RootCertFile: cp.rootFile,
		HBONEAddr: n.ip(hostWaypoint) + ":0", AdminAddr: "127.0.0.1:0",
		MetricsAddr: n.ip(hostWaypoint) + ":0", ReadinessAddr: n.ip(hostWaypoint) + ":0",
		UpstreamHBONEPort: port, RootCertPoll: 20 * time.Millisecond, DrainTimeout: 30 * time.Second,
		AccessLog: accessLog, Logger: testLogger(logs), LogLevel: level,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()
	var stopOnce sync.Once
	stop := func() error {
		var err error
		stopOnce.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				err = errors.New("Start did not return after the drain")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	defer func() {
		if t.Failed() {
			t.Logf("waypoint log:\n%s", logs.String())
		}
	}()
	readyURL := "http://" + p.Addr(ListenerReadiness) + "/healthz/ready"
	metricsURL := "http://" + p.Addr(ListenerMetrics) + "/metrics"
	adminURL := "http://" + p.Addr(ListenerAdmin)

	// Readiness: the root certificate file (an optional ConfigMap volume)
	// is not there yet; the waypoint waits for it, unready.
	if code, body := httpGet(t, readyURL); code != 503 || !strings.Contains(body, "root certificate file") {
		t.Fatalf("readiness before the roots: %d %q", code, body)
	}
	time.Sleep(100 * time.Millisecond)
	if code, _ := httpGet(t, readyURL); code != 503 {
		t.Fatal("ready without trust roots")
	}
	cp.writeRoots(t)
	waitFor(t, "readiness", func() bool { code, _ := httpGet(t, readyURL); return code == 200 })

	hboneAddr := p.Addr(ListenerHBONE)
	clientA := newClient(t, cp, clientAID, n.ip(hostClientA), hboneAddr)
	clientB := newClient(t, cp, clientBID, n.ip(hostClientB), hboneAddr)

	t.Run("traceparent", func(t *testing.T) {
		// The first request to echo-v2 opens the waypoint's tunnel to its
		// ztunnel: the CONNECT carries the request's trace.
		const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		in := "00-" + traceID + "-00f067aa0ba902b7-01"
		code, rep, _ := clientA.get(t, echoVIP, "/traced", http.Header{"Traceparent": {in}})
		if code != 200 || rep.Pod != "echo-v2" {
			t.Fatalf("client-a → %d from %q, want 200 from echo-v2 (consumer route)", code, rep.Pod)
		}
		tp := first(rep.Header["Traceparent"])
		if !strings.HasPrefix(tp, "00-"+traceID+"-") || strings.Contains(tp, "00f067aa0ba902b7") || !strings.HasSuffix(tp, "-01") {
			t.Errorf("backend traceparent %q: want trace %s continued under the waypoint's span", tp, traceID)
		}
		cs := sV2.connects()
		if len(cs) != 1 {
			t.Fatalf("echo-v2's ztunnel saw %d CONNECTs, want 1", len(cs))
		}
		c := cs[0]
		if c.peer != waypointID {
			t.Errorf("upstream tunnel from %s, want the waypoint's own identity %s", c.peer, waypointID)
		}
		if want := netip.MustParseAddrPort(n.ip(hostV2) + ":8080"); c.authority != want {
			t.Errorf("upstream CONNECT authority %s, want %s (pod IP:target port)", c.authority, want)
		}
		if got := c.header.Get("Traceparent"); got != tp {
			t.Errorf("upstream CONNECT traceparent %q, want the request's outgoing %q", got, tp)
		}
		if ip, ok := hbone.ParseForwardedFor(c.header.Get("Forwarded")); !ok || ip.String() != n.ip(hostClientA) {
			t.Errorf("upstream CONNECT Forwarded %q, want for=%s", c.header.Get("Forwarded"), n.ip(hostClientA))
		}

		// A request without its own trace continues the trace its tunnel's
		// CONNECT carried.
		const tunnelTrace = "0af7651916cd43dd8448eb211c80319c"
		tc := newClient(t, cp, clientBID, n.ip(hostClientB), hboneAddr)
		tc.header = http.Header{"Traceparent": {"00-" + tunnelTrace + "-b7ad6b7169203331-01"}}
		code, rep, _ = tc.get(t, echoVIP, "/untraced", nil)
		if code != 200 || !strings.HasPrefix(first(rep.Header["Traceparent"]), "00-"+tunnelTrace+"-") {
			t.Errorf("request without trace → %d, backend traceparent %q: want the tunnel's trace %s", code, first(rep.Header["Traceparent"]), tunnelTrace)
		}
	})

	t.Run("split and consumer route", func(t *testing.T) {
		count := map[string]int{}
		for range 200 {
			code, rep, _ := clientB.get(t, echoVIP, "/split", nil)
			if code != 200 {
				t.Fatalf("client-b: %d", code)
			}
			if rep.Header["X-Consumer"] != nil {
				t.Fatal("client-b got client-a's consumer route")
			}
			count[rep.Pod]++
		}
		// Binomial(200, 0.1): the bounds are > 5 standard deviations out.
		if count["echo-v1"] < 150 || count["echo-v2"] < 4 || count["echo-v1"]+count["echo-v2"] != 200 {
			t.Errorf("producer split over 200 requests: %v, want ≈ 180/20", count)
		}
		for range 20 {
			code, rep, _ := clientA.get(t, echoVIP, "/consumer", nil)
			if code != 200 || rep.Pod != "echo-v2" || first(rep.Header["X-Consumer"]) != "client-a" {
				t.Fatalf("client-a → %d from %q (x-consumer %v): want the consumer route to echo-v2", code, rep.Pod, rep.Header["X-Consumer"])
			}
		}
		if n := len(sV1.connects()); n == 0 {
			t.Error("echo-v1 reached without its ztunnel")
		}
		// Pooled and multiplexed: 220 requests, a handful of tunnels, one
		// TLS connection per ztunnel.
		if n := len(sV2.connects()); n > 8 {
			t.Errorf("%d CONNECTs to echo-v2's ztunnel for keep-alive traffic", n)
		}
		if st := p.Connections().Upstream; st.Connections > 3 {
			t.Errorf("upstream pool holds %d connections, want one per ztunnel", st.Connections)
		}
	})

	t.Run("upstream identity and plain backends", func(t *testing.T) {
		code, _, _ := clientB.get(t, echoVIP, "/bad", nil)
		if code != 503 {
			t.Errorf("endpoint whose ztunnel presents the wrong identity: %d, want 503", code)
		}
		if n := len(sBad.connects()); n != 0 {
			t.Errorf("the impostor received %d CONNECTs", n)
		}
		if !eventuallyContains(accessLog, `"path":"/bad"`, `"flags":"UF"`, "identity mismatch") {
			t.Errorf("access log has no UF line naming the identity mismatch:\n%s", accessLog.String())
		}
		code, rep, _ := clientB.get(t, echoVIP, "/legacy", nil)
		if code != 200 || rep.Pod != "legacy" {
			t.Errorf("out-of-mesh backend (plain TCP): %d from %q", code, rep.Pod)
		}
	})

	t.Run("workload traffic and refusals", func(t *testing.T) {
		pod := n.ip(hostV1) + ":8080"
		code, rep, _ := clientA.get(t, pod, "/hello", nil)
		if code != 200 || rep.Pod != "echo-v1" || rep.Header["X-Consumer"] != nil {
			t.Errorf("pod-addressed → %d from %q: want echo-v1 itself, no Service routes", code, rep.Pod)
		}
		if code, _, _ := clientA.get(t, pod, "/admin/x", nil); code != 403 {
			t.Errorf("pod-addressed /admin under the pod's DENY policy: %d, want 403", code)
		}
		for _, c := range []struct{ dst, why string }{
			{"10.96.9.9:80", "unknown address"},
			{"10.96.0.20:81", "port the Service does not have"},
			{"10.96.0.10:15008", "a Service this waypoint has no routes for"},
		} {
			_, err := clientA.dial(context.Background(), c.dst)
			var se *hbone.StatusError
			if !errors.As(err, &se) || se.Code != 404 {
				t.Errorf("CONNECT %s (%s): %v, want 404", c.dst, c.why, err)
			}
		}
	})

	t.Run("metrics and admin", func(t *testing.T) {
		_, text := httpGet(t, metricsURL)
		wantLine(t, text, "istio_requests_total", `reporter="waypoint"`, `source_principal="`+clientAID.String()+`"`,
			`source_workload="curl-a"`, `source_workload_namespace="client-a"`, `destination_service="echo.shop.svc.cluster.local"`,
			`destination_service_namespace="shop"`, `destination_workload="echo-v2"`, `response_code="200"`)
		wantLine(t, text, "istio_requests_total", `source_workload="curl-b"`, `destination_workload="echo-v1"`, `response_code="200"`)
		wantLine(t, text, "istio_requests_total", `source_workload="curl-b"`, `response_code="503"`, `response_flags="UF"`)
		wantLine(t, text, "warren_waypoint_hbone_streams_total", `result="unknown_destination"`)
		wantLine(t, text, "warren_waypoint_config_updates_total", `type="L7Service"`, `result="applied"`)
		for name, want := range map[string]float64{"warren_waypoint_ready": 1, "warren_waypoint_xds_connected": 1, "warren_waypoint_trust_bundle_roots": 1} {
			if v := value(text, name); v != want {
				t.Errorf("%s = %v, want %v", name, v, want)
			}
		}
		if exp := value(text, "warren_waypoint_cert_expiry_timestamp_seconds"); exp < float64(time.Now().Add(time.Hour).Unix()) {
			t.Errorf("certificate expiry %v: want a fresh certificate", exp)
		}

		var d ConfigDump
		_, body := httpGet(t, adminURL+"/config_dump")
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			t.Fatal(err)
		}
		if d.Ready != "ready" || d.Identity.State != "valid" || d.Identity.ID != waypointID.String() || len(d.TrustBundle.Roots) != 1 ||
			d.XDS == nil || !d.XDS.Connected || d.NodeID != "waypoint~shop/waypoint~waypoint-0" || d.Config.L7Services[echoKey] == nil {
			t.Errorf("config_dump: ready %q identity %+v roots %d xds %v node %q l7 %v", d.Ready, d.Identity, len(d.TrustBundle.Roots), d.XDS != nil, d.NodeID, len(d.Config.L7Services))
		}
		var l7 warrenv1.L7Service
		if err := protojson.Unmarshal(d.Config.L7Services[echoKey], &l7); err != nil || l7.GetWaypoint() != "shop/waypoint" {
			t.Errorf("config_dump L7Service: %v %v", err, l7.GetWaypoint())
		}
		var cs ConnectionStats
		_, body = httpGet(t, adminURL+"/debug/connections")
		if err := json.Unmarshal([]byte(body), &cs); err != nil || cs.Inbound.Connections < 1 || cs.Upstream.Connections < 1 || cs.Streams.Accepted < 1 {
			t.Errorf("debug/connections: %v %s", err, body)
		}
		if code, _ := httpGet(t, adminURL+"/logging?level=debug"); code != 200 || level.Level() != slog.LevelDebug {
			t.Errorf("/logging?level=debug: %d, level %v", code, level.Level())
		}
		if code, _ := httpGet(t, adminURL+"/logging?level=loud"); code != 400 {
			t.Errorf("/logging?level=loud: %d, want 400", code)
		}
	})

	t.Run("NACK keeps the last good config", func(t *testing.T) {
		good := p.Store().Config().L7Services[echoKey]
		bad := proto.Clone(good).(*warrenv1.L7Service)
		bad.Ports[0].Producer.Routes[0].Match = &warrenv1.RouteMatch{Path: &warrenv1.PathMatch{Type: warrenv1.MatchType_REGEX, Value: "(["}}
		if err := cp.xds.Update(xds.TypeL7Service, map[string]proto.Message{echoKey: bad}, nil); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the NACK", func() bool { return p.handler.Status()["L7Service"].Rejected >= 1 })
		waitFor(t, "istiod-lite to see the NACK", func() bool {
			for _, ps := range cp.xds.Syncz() {
				if ps.Proxy == "waypoint~shop/waypoint~waypoint-0" && ps.Types[xds.TypeL7Service].Status == xds.StatusNACKed {
					return true
				}
			}
			return false
		})
		if !proto.Equal(p.Store().Config().L7Services[echoKey], good) {
			t.Fatal("the rejected L7Service replaced the good one")
		}
		if st := p.handler.Status()["L7Service"]; !strings.Contains(st.LastError, "path regex") {
			t.Errorf("NACK reason %q does not name the bad regex", st.LastError)
		}
		if code, rep, _ := clientA.get(t, echoVIP, "/after-nack", nil); code != 200 || rep.Pod != "echo-v2" {
			t.Errorf("traffic after the NACK: %d from %q", code, rep.Pod)
		}
		if code, _ := httpGet(t, readyURL); code != 200 {
			t.Error("a NACK after sync made the waypoint unready")
		}
		_, text := httpGet(t, metricsURL)
		wantLine(t, text, "warren_waypoint_config_updates_total", `type="L7Service"`, `result="rejected"`)

		// A fixed edit (everything to echo-v2) is accepted and applied.
		cp.edit(t, meshYAML(n, 0, 100))
		waitFor(t, "the edit", func() bool {
			l7 := p.Store().Config().L7Services[echoKey]
			rs := l7.GetPorts()[0].GetProducer().GetRoutes()
			return len(rs) == 3 && len(rs[2].GetBackends()) == 2 && rs[2].GetBackends()[0].GetWeight() == 0
		})
		if st := p.handler.Status()["L7Service"]; st.LastError != "" {
			t.Errorf("error kept after a good update: %q", st.LastError)
		}
		for range 20 {
			if code, rep, _ := clientB.get(t, echoVIP, "/all-v2", nil); code != 200 || rep.Pod != "echo-v2" {
				t.Fatalf("after the 0/100 edit: %d from %q", code, rep.Pod)
			}
		}
	})

	t.Run("root rotation over xDS", func(t *testing.T) {
		// A new root joins the bundle istiod-lite pushes; once it signs, a
		// client whose SVID chains only to it is accepted by the waypoint
		// (its HBONE server verifies against the xDS-fed bundle), and the
		// waypoint still reaches the pods' old-root ztunnels.
		newRoot, err := cp.ca.PrepareRoot()
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the new root over xDS", func() bool { return p.bundle.Contains(newRoot) && len(p.bundle.Roots()) == 2 })
		if err := cp.ca.ActivatePending(); err != nil {
			t.Fatal(err)
		}
		rotated := newClient(t, cp, clientAID, n.ip(hostClientA), hboneAddr)
		if last := rotated.svid.Certificates[len(rotated.svid.Certificates)-1]; last.CheckSignatureFrom(newRoot) != nil {
			t.Fatalf("the test client's SVID does not chain to the new root")
		}
		if code, rep, _ := rotated.get(t, echoVIP, "/rotated", nil); code != 200 || rep.Pod != "echo-v2" {
			t.Errorf("client with a new-root SVID: %d from %q", code, rep.Pod)
		}
	})

	t.Run("drain", func(t *testing.T) {
		type res struct {
			code int
			pod  string
		}
		slow := make(chan res, 1)
		go func() {
			code, rep, _ := clientB.get(t, echoVIP, "/slow", nil)
			slow <- res{code, rep.Pod}
		}()
		select {
		case <-v2.started:
		case <-time.After(30 * time.Second):
			t.Fatal("the slow request never reached echo-v2")
		}
		errc := make(chan error, 1)
		go func() { errc <- stop() }()
		waitFor(t, "readiness to turn false", func() bool {
			code, body := httpGet(t, readyURL)
			return code == 503 && strings.Contains(body, "draining")
		})
		select {
		case err := <-errc:
			t.Fatalf("Start returned with a request in flight: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		close(v2.release)
		if r := <-slow; r.code != 200 || r.pod != "echo-v2" {
			t.Errorf("request in flight during the drain: %d from %q", r.code, r.pod)
		}
		if err := <-errc; err != nil {
			t.Fatalf("Start: %v", err)
		}
		if _, err := clientA.dial(context.Background(), echoVIP); err == nil {
			t.Error("a tunnel opened after the drain")
		}
		if !strings.Contains(logs.String(), `"msg":"waypoint: drained"`) {
			t.Errorf("no clean drain in the log")
		}
	})
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// eventuallyContains waits for a line of b holding every part.
func eventuallyContains(b *syncBuf, parts ...string) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(b.String(), "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// wantLine fails unless the exposition text has a sample of metric with
// every label.
func wantLine(t *testing.T, text, metric string, labels ...string) {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, metric+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if ok {
			return
		}
	}
	t.Errorf("no %s sample with %v", metric, labels)
}

// value is an unlabelled sample's value (NaN-free: -1 when absent).
func value(text, metric string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, metric+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, metric+" ")), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}
