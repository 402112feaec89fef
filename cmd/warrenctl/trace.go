package main

// predictTrace explains one request from a pod, hop by hop, from the
// per-proxy configuration alone (translate.Output: Workloads, Services,
// Authorizations, L7Services — what istiod-lite sends). It is pure: no
// I/O, no clock, no randomness. The waypoint's request path is
// waypoint/chain.go; this follows it step by step:
//
//	capture → ztunnel (waypoint or endpoint) → waypoint: authorize → table
//	(consumer for the client's namespace, else producer; none → Service
//	endpoints) → first matching route (none → 404 / UNIMPLEMENTED) →
//	filters → weighted backend → endpoint → HBONE identity + L4 policy.

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// traceRequest is what to trace.
type traceRequest struct {
	FromNamespace, FromName string
	Method                  string
	URL                     string
	Header                  http.Header
}

// tracer holds the configuration and the optional explainer.
type tracer struct {
	cfg *translate.Output
	why traceWhy
	p   *tracePrediction
	q   matchRequest
	// scheme of the request URL.
	scheme string
}

// predictTrace predicts rq against cfg. why adds the labels that decided
// (may be zero: the prediction then lacks only those explanations).
func predictTrace(cfg *translate.Output, why traceWhy, rq traceRequest) (*tracePrediction, error) {
	u, err := parseTraceURL(rq.URL)
	if err != nil {
		return nil, err
	}
	srcKey := rq.FromNamespace + "/" + rq.FromName
	src := cfg.Workloads[srcKey]
	if src == nil {
		return nil, why.missingPod(rq.FromNamespace, rq.FromName)
	}
	t := &tracer{cfg: cfg, why: why, scheme: u.Scheme, p: &tracePrediction{}}
	port := defaultPort(u)
	method := rq.Method
	if method == "" {
		method = http.MethodGet
	}
	hdr := rq.Header.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	t.q = matchRequest{Method: method, Path: normalizePath(u.EscapedPath()), RawQuery: u.RawQuery, Host: u.Host, Header: hdr}
	t.p.Request = traceRequestView{Method: method, URL: u.String(), Host: u.Hostname(), Port: port, Path: t.q.Path}
	if u.Scheme == "grpc" || strings.HasPrefix(hdr.Get("Content-Type"), "application/grpc") {
		t.grpc()
	}
	t.p.Source = traceSource{Pod: srcKey, Address: first(src.GetAddresses()), Node: src.GetNode(), Identity: src.GetIdentity(),
		Enrolled: src.GetTunnel() == warrenv1.TunnelProtocol_TUNNEL_HBONE, Why: why.enrolled(rq.FromNamespace, rq.FromName)}

	svcKey, svc, dst := t.resolve(u.Hostname(), rq.FromNamespace)
	switch {
	case svc != nil:
		t.p.Destination = traceDestination{Kind: "service", Name: svc.GetNamespace() + "/" + svc.GetName(), Hostname: svc.GetHostname(),
			Address: first(svc.GetAddresses()), Port: port}
	case dst != nil:
		t.p.Destination = traceDestination{Kind: "workload", Name: dst.GetNamespace() + "/" + dst.GetName(), Address: u.Hostname(), Port: port}
	default:
		t.p.Destination = traceDestination{Kind: "external", Address: u.Hostname(), Port: port}
	}
	if !t.p.Source.Enrolled {
		t.unenrolled(src, svcKey, svc, dst, port)
		return t.p, nil
	}
	t.hop("capture", "pod "+srcKey, "captured by ztunnel",
		fmt.Sprintf("eBPF redirects the connect to %s to ztunnel's outbound listener :15001 in the pod's network namespace (ztunnel on %s)", net.JoinHostPort(u.Hostname(), fmt.Sprint(port)), dash(src.GetNode())),
		"source identity "+src.GetIdentity()+orEmpty(" (", t.p.Source.Why, ")"))
	switch {
	case svc != nil:
		t.toService(src, svcKey, svc, port)
	case dst != nil:
		t.toWorkload(src, dst, port)
	default:
		t.hop("ztunnel", "ztunnel "+dash(src.GetNode()), "passthrough",
			fmt.Sprintf("%s is neither a Service nor a workload the mesh knows: ztunnel forwards it as plain TCP, without identity or policy", u.Hostname()))
		t.p.Result = traceResult{Outcome: outcomePassthrough, Summary: "leaves the mesh as plain TCP to " + net.JoinHostPort(u.Hostname(), fmt.Sprint(port))}
	}
	return t.p, nil
}

func (t *tracer) hop(step, at, decision string, details ...string) *traceHop {
	var ds []string
	for _, d := range details {
		if d != "" {
			ds = append(ds, d)
		}
	}
	t.p.Hops = append(t.p.Hops, traceHop{Step: step, At: at, Decision: decision, Details: ds})
	return &t.p.Hops[len(t.p.Hops)-1]
}

func (t *tracer) grpc() {
	t.p.Request.GRPC = true
	t.q.Method = http.MethodPost
	t.p.Request.Method = http.MethodPost
	if t.q.Header.Get("Content-Type") == "" {
		t.q.Header.Set("Content-Type", "application/grpc")
	}
}

func parseTraceURL(raw string) (*url.URL, error) {
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, usagef("URL %q: %v", raw, err)
	}
	switch u.Scheme {
	case "http", "https", "grpc", "h2c", "tcp":
	default:
		return nil, usagef("URL %q: scheme %q: want http, https, grpc, h2c or tcp", raw, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, usagef("URL %q has no host", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, usagef("URL %q: port %q is not a port", raw, p)
		}
	} else if u.Scheme == "tcp" {
		return nil, usagef("URL %q: a tcp:// URL needs a port", raw)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

func defaultPort(u *url.URL) uint32 {
	if p := u.Port(); p != "" {
		n, _ := strconv.Atoi(p)
		return uint32(n)
	}
	if u.Scheme == "https" {
		return 443
	}
	return 80
}

// resolve finds the destination: a Service by VIP or DNS name (short
// names in the client's namespace, as its DNS search path does), else a
// workload by IP.
func (t *tracer) resolve(host, clientNS string) (string, *warrenv1.Service, *warrenv1.Workload) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		for _, k := range sortedKeys(t.cfg.Services) {
			for _, a := range t.cfg.Services[k].GetAddresses() {
				if b, err := netip.ParseAddr(a); err == nil && b == ip {
					return k, t.cfg.Services[k], nil
				}
			}
		}
		for _, k := range sortedKeys(t.cfg.Workloads) {
			for _, a := range t.cfg.Workloads[k].GetAddresses() {
				if b, err := netip.ParseAddr(a); err == nil && b == ip {
					return "", nil, t.cfg.Workloads[k]
				}
			}
		}
		return "", nil, nil
	}
	for _, k := range sortedKeys(t.cfg.Services) {
		s := t.cfg.Services[k]
		base := s.GetName() + "." + s.GetNamespace()
		if host == s.GetHostname() || host == base || host == base+".svc" || (host == s.GetName() && s.GetNamespace() == clientNS) {
			return k, s, nil
		}
	}
	return "", nil, nil
}

// toService follows traffic to a Service frontend.
func (t *tracer) toService(src *warrenv1.Workload, key string, svc *warrenv1.Service, port uint32) {
	at := "ztunnel " + dash(src.GetNode())
	sp := servicePort(svc, port)
	if sp == nil {
		t.hop("ztunnel", at, "refused", fmt.Sprintf("Service %s has no port %d (ports: %s)", t.p.Destination.Name, port, portList(svc)))
		t.p.Result = traceResult{Outcome: outcomeRefused, Summary: fmt.Sprintf("connection refused: Service %s has no port %d", t.p.Destination.Name, port)}
		return
	}
	l7 := t.cfg.L7Services[key]
	wp := svc.GetWaypoint()
	t.p.Destination.WaypointWhy = t.why.serviceWaypoint(svc.GetNamespace(), svc.GetName())
	if wp == nil {
		details := []string{orEmpty("", t.p.Destination.WaypointWhy, "")}
		if l7 != nil {
			details = append(details, fmt.Sprintf("waypoint %s is bound but has no address yet (its Service does not exist): until it has one, ztunnel sends straight to the endpoints and routes do not apply", l7.GetWaypoint()))
			t.p.Notes = append(t.p.Notes, "waypoint "+l7.GetWaypoint()+" has no address: is it deployed?")
		}
		t.p.Notes = append(t.p.Notes, t.why.inertRoutes(svc.GetNamespace(), svc.GetName())...)
		details = append(details, "no waypoint: ztunnel picks an endpoint itself; HTTP routes and L7 policies do not apply")
		t.hop("ztunnel", at, "to an endpoint of "+t.p.Destination.Name+" directly", details...)
		b := t.backend(key, port, 1, 100)
		t.localityPick(&b, src, svc)
		t.identityHop(src.GetIdentity(), &b, "ztunnel")
		t.finish("", []traceBackend{b})
		return
	}
	t.p.Destination.Waypoint = wp.GetGateway()
	wpAt := "waypoint " + wp.GetGateway()
	t.hop("ztunnel", at, "to waypoint "+wp.GetGateway(),
		orEmpty("", t.p.Destination.WaypointWhy, ""),
		fmt.Sprintf("HBONE CONNECT %s:%d over mTLS as %s; the waypoint must present %s", wp.GetAddress(), wp.GetHbonePort(), src.GetIdentity(), wp.GetIdentity()))
	proto := warrenv1.Protocol_PROTOCOL_UNSPECIFIED
	var lp *warrenv1.L7Port
	for _, p := range l7.GetPorts() {
		if p.GetPort() == port {
			lp = p
			proto = p.GetProtocol()
		}
	}
	t.p.Destination.Protocol = protocolName(proto)
	opaque := proto == warrenv1.Protocol_TCP || t.scheme == "https" || t.scheme == "tcp"
	// 1. authorize
	q := authzQuery{Identity: src.GetIdentity(), Namespace: identityNamespace(src.GetIdentity()), Port: port,
		Method: t.q.Method, Path: t.q.Path, Header: t.q.Header, L4Only: opaque}
	v := evaluatePolicies(l7.GetAuthorizationPolicies(), t.cfg.Authorizations, q)
	if !v.Allow {
		t.hop("authorize", wpAt, "denied", v.Why)
		t.p.Result = traceResult{Outcome: outcomeDenied, Status: http.StatusForbidden, Summary: "403 RBAC: access denied by the waypoint: " + v.Why}
		if opaque {
			t.p.Result.Status = 0
			t.p.Result.Summary = "the waypoint closes the connection (opaque TCP is authorized at L4): " + v.Why
		}
		if t.p.Request.GRPC {
			t.p.Result.GRPCStatus = "7 PERMISSION_DENIED"
		}
		return
	}
	t.hop("authorize", wpAt, "allowed", v.Why)
	if opaque {
		why := "port protocol is TCP"
		if t.scheme == "https" || t.scheme == "tcp" {
			why = "the client speaks " + strings.ToUpper(t.scheme) + " (opaque to the waypoint)"
		}
		t.hop("route", wpAt, "no HTTP routing: "+why, "opaque TCP goes to the Service's own endpoints")
		b := t.backend(key, port, 1, 100)
		t.evenPick(&b)
		t.identityHop(wp.GetIdentity(), &b, "waypoint")
		t.finish("", []traceBackend{b})
		return
	}
	// 2. route table
	clientNS := identityNamespace(src.GetIdentity())
	table, which := selectTable(lp, clientNS)
	if table != nil && table.GetKind() == "GRPCRoute" && !t.p.Request.GRPC {
		t.grpc()
	}
	if table == nil {
		t.hop("route", wpAt, "no routes on port "+fmt.Sprint(port)+": the Service's own endpoints", which)
		b := t.backend(key, port, 1, 100)
		t.evenPick(&b)
		t.identityHop(wp.GetIdentity(), &b, "waypoint")
		t.finish("", []traceBackend{b})
		return
	}
	h := t.hop("route", wpAt, "", which)
	var matched *warrenv1.Route
	for i, r := range table.GetRoutes() {
		ok, why := matchRoute(r.GetMatch(), &t.q)
		h.Routes = append(h.Routes, traceRouteCheck{Index: i, Route: refString(r.GetSource()), Match: describeMatch(r.GetMatch()), Matched: ok, Why: why})
		if ok {
			matched = r
			break
		}
	}
	if matched == nil {
		h.Decision = fmt.Sprintf("no route matches (%d tried)", len(table.GetRoutes()))
		t.p.Result = traceResult{Outcome: outcomeNoRoute, Status: http.StatusNotFound, Summary: "404: a route binds this port and none matches the request"}
		if table.GetKind() == "GRPCRoute" || t.p.Request.GRPC {
			t.p.Result.GRPCStatus = "12 UNIMPLEMENTED"
			t.p.Result.Summary = "gRPC UNIMPLEMENTED: a GRPCRoute binds this port and none matches the method"
		}
		return
	}
	ref := refString(matched.GetSource())
	h.Decision = "matched " + ref
	// 3. filters
	if done := t.filters(wpAt, matched, port); done {
		t.p.Result.Route = ref
		return
	}
	// 4. backends
	backends := t.backends(matched)
	for i := range backends {
		t.evenPick(&backends[i])
	}
	if len(backends) > 0 {
		var parts []string
		for _, b := range backends {
			parts = append(parts, fmt.Sprintf("%s:%d weight %d = %s", b.Service, b.Port, b.Weight, percent(b.Percent)))
		}
		d := t.hop("backend", wpAt, "weighted choice per request", parts...)
		for _, b := range matched.GetBackends() {
			for _, f := range b.GetFilters() {
				if hm := f.GetRequestHeaderModifier(); hm != nil {
					d.Details = append(d.Details, fmt.Sprintf("to %s:%d only: request headers: %s", b.GetService(), b.GetPort(), headerChanges(hm)))
				}
				if hm := f.GetResponseHeaderModifier(); hm != nil {
					d.Details = append(d.Details, fmt.Sprintf("from %s:%d only: response headers: %s", b.GetService(), b.GetPort(), headerChanges(hm)))
				}
			}
		}
		d.Details = append(d.Details, routeExtras(matched)...)
		for _, b := range backends {
			if b.Invalid == "" {
				t.identityHop(wp.GetIdentity(), &b, "waypoint")
			}
		}
	}
	t.finish(ref, backends)
}

// toWorkload follows traffic addressed to a pod IP.
func (t *tracer) toWorkload(src, dst *warrenv1.Workload, port uint32) {
	at := "ztunnel " + dash(src.GetNode())
	id := src.GetIdentity()
	kind := "ztunnel"
	if wp := dst.GetWaypoint(); wp != nil {
		t.p.Destination.Waypoint = wp.GetGateway()
		t.hop("ztunnel", at, "to workload waypoint "+wp.GetGateway(),
			t.why.workloadWaypoint(dst.GetNamespace(), dst.GetName()),
			fmt.Sprintf("HBONE CONNECT %s:%d; the waypoint must present %s; it forwards to the pod (Service routes do not apply to pod-IP traffic)", wp.GetAddress(), wp.GetHbonePort(), wp.GetIdentity()))
		id, kind = wp.GetIdentity(), "waypoint"
	} else {
		t.hop("ztunnel", at, "to the pod directly", orEmpty("", t.why.workloadWaypoint(dst.GetNamespace(), dst.GetName()), ""),
			"traffic to a pod IP is not Service traffic: no Service waypoint or route applies")
	}
	b := traceBackend{Service: "pod " + dst.GetNamespace() + "/" + dst.GetName(), Port: port, Weight: 1, Percent: 100,
		Endpoints: []traceEndpoint{endpointOf(dst, port, 100)}}
	t.identityHop(id, &b, kind)
	t.finish("", []traceBackend{b})
}

// unenrolled follows traffic from a pod outside the mesh.
func (t *tracer) unenrolled(src *warrenv1.Workload, key string, svc *warrenv1.Service, dst *warrenv1.Workload, port uint32) {
	at := "pod " + t.p.Source.Pod
	why := orEmpty(" (", t.p.Source.Why, ")")
	t.hop("capture", at, "not captured: the pod is not in the mesh"+why,
		"the connection leaves the pod as plain TCP: no ztunnel, no waypoint, no routes, no identity")
	var b traceBackend
	switch {
	case svc != nil:
		if servicePort(svc, port) == nil {
			t.p.Result = traceResult{Outcome: outcomeRefused, Summary: fmt.Sprintf("connection refused: Service %s has no port %d", t.p.Destination.Name, port)}
			return
		}
		t.hop("kube-proxy", "node "+dash(src.GetNode()), "any ready endpoint of "+t.p.Destination.Name)
		b = t.backend(key, port, 1, 100)
	case dst != nil:
		b = traceBackend{Service: "pod " + t.p.Destination.Name, Port: port, Weight: 1, Percent: 100, Endpoints: []traceEndpoint{endpointOf(dst, port, 100)}}
	default:
		t.p.Result = traceResult{Outcome: outcomePassthrough, Summary: "plain TCP to " + net.JoinHostPort(t.p.Destination.Address, fmt.Sprint(port)) + " outside the mesh"}
		return
	}
	t.evenPick(&b)
	t.identityHop("", &b, "plaintext")
	t.finish("", []traceBackend{b})
}

func selectTable(lp *warrenv1.L7Port, clientNS string) (*warrenv1.RouteTable, string) {
	if lp == nil {
		return nil, "the waypoint has no L7 configuration for this port"
	}
	if ct, ok := lp.GetConsumers()[clientNS]; ok && clientNS != "" && ct != nil {
		return ct, fmt.Sprintf("consumer table of namespace %s (%s): consumer routes replace the producer routes for clients of their namespace", clientNS, entries(len(ct.GetRoutes())))
	}
	if p := lp.GetProducer(); p != nil {
		note := ""
		if len(lp.GetConsumers()) > 0 {
			note = fmt.Sprintf(" (consumer tables exist for %s, not for %s)", strings.Join(sortedKeys(lp.GetConsumers()), ", "), dash(clientNS))
		}
		return p, fmt.Sprintf("producer table (%s)%s", entries(len(p.GetRoutes())), note)
	}
	return nil, "no producer table and no consumer table for namespace " + dash(clientNS)
}

func entries(n int) string {
	if n == 1 {
		return "1 entry"
	}
	return fmt.Sprintf("%d entries", n)
}

func servicePort(svc *warrenv1.Service, port uint32) *warrenv1.ServicePort {
	for _, p := range svc.GetPorts() {
		if p.GetPort() == port && (p.GetProtocol() == "" || p.GetProtocol() == "TCP") {
			return p
		}
	}
	return nil
}

func portList(svc *warrenv1.Service) string {
	var ps []string
	for _, p := range svc.GetPorts() {
		ps = append(ps, fmt.Sprintf("%d/%s", p.GetPort(), dash(p.GetProtocol())))
	}
	return dash(strings.Join(ps, ", "))
}

func protocolName(p warrenv1.Protocol) string {
	if p == warrenv1.Protocol_PROTOCOL_UNSPECIFIED {
		return "detect (HTTP/1.1 or h2c sniffed, else TCP)"
	}
	return p.String()
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// orEmpty wraps s in pre/post, or returns "" for an empty s.
func orEmpty(pre, s, post string) string {
	if s == "" {
		return ""
	}
	return pre + s + post
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

func percent(x float64) string {
	return strconv.FormatFloat(round2(x), 'f', -1, 64) + "%"
}
