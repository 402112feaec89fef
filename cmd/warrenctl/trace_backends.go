package main

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

// backend lists the ready endpoints of Service key port, as the
// waypoint's load balancer does (lb.Endpoints): workloads whose service
// map holds key with a mapping for port, first address, sorted by
// address. Shares are filled by the picking step.
func (t *tracer) backend(key string, port, weight uint32, pct float64) traceBackend {
	b := traceBackend{Service: key, Port: port, Weight: weight, Percent: round2(pct)}
	for _, wk := range sortedKeys(t.cfg.Workloads) {
		w := t.cfg.Workloads[wk]
		if !w.GetReady() {
			continue
		}
		target := uint32(0)
		for _, pm := range w.GetServices()[key].GetPorts() {
			if pm.GetServicePort() == port {
				target = pm.GetTargetPort()
				break
			}
		}
		if target == 0 || len(w.GetAddresses()) == 0 {
			continue
		}
		b.Endpoints = append(b.Endpoints, endpointOf(w, target, 0))
	}
	sortEndpoints(b.Endpoints)
	return b
}

func endpointOf(w *warrenv1.Workload, port uint32, pct float64) traceEndpoint {
	tunnel := "TCP"
	if w.GetTunnel() == warrenv1.TunnelProtocol_TUNNEL_HBONE {
		tunnel = "HBONE"
	}
	return traceEndpoint{Workload: w.GetNamespace() + "/" + w.GetName(), Address: net.JoinHostPort(first(w.GetAddresses()), strconv.FormatUint(uint64(port), 10)),
		Node: w.GetNode(), Identity: w.GetIdentity(), Tunnel: tunnel, Percent: round2(pct)}
}

func sortEndpoints(eps []traceEndpoint) {
	for i := 1; i < len(eps); i++ {
		for j := i; j > 0 && eps[j].Address < eps[j-1].Address; j-- {
			eps[j], eps[j-1] = eps[j-1], eps[j]
		}
	}
}

// backends resolves a route's weighted backends. Invalid backends keep
// their share of traffic, which gets 500; zero weights get nothing.
func (t *tracer) backends(r *warrenv1.Route) []traceBackend {
	var total uint64
	for _, b := range r.GetBackends() {
		total += uint64(b.GetWeight())
	}
	var out []traceBackend
	for _, b := range r.GetBackends() {
		pct := 0.0
		if total > 0 {
			pct = 100 * float64(b.GetWeight()) / float64(total)
		}
		invalid := b.GetInvalid()
		if invalid == "" && b.GetService() == "" {
			invalid = "backend names no Service"
		}
		if invalid != "" {
			out = append(out, traceBackend{Service: dash(b.GetService()), Port: b.GetPort(), Weight: b.GetWeight(), Percent: round2(pct), Invalid: invalid})
			continue
		}
		tb := t.backend(b.GetService(), b.GetPort(), b.GetWeight(), pct)
		out = append(out, tb)
	}
	return out
}

// evenPick spreads a backend's share evenly over its endpoints: the
// waypoint picks per request by power of two choices on active
// requests, which is even under even load (kube-proxy picks at random).
func (t *tracer) evenPick(b *traceBackend) {
	for i := range b.Endpoints {
		b.Endpoints[i].Percent = round2(b.Percent / float64(len(b.Endpoints)))
	}
}

// localityPick applies ztunnel's routing preference: endpoints on the
// client's node, else in its zone (per the Service's preference list),
// else all of them; the share is even within the chosen set.
func (t *tracer) localityPick(b *traceBackend, src *warrenv1.Workload, svc *warrenv1.Service) {
	pick := func(keep func(traceEndpoint) bool) []int {
		var idx []int
		for i, ep := range b.Endpoints {
			if keep(ep) {
				idx = append(idx, i)
			}
		}
		return idx
	}
	var set []int
	scope := "any ready endpoint"
	zoneOf := map[string]string{}
	for _, w := range t.cfg.Workloads {
		zoneOf[w.GetNamespace()+"/"+w.GetName()] = w.GetZone()
	}
	for _, s := range svc.GetLoadBalancing().GetRoutingPreference() {
		switch s {
		case warrenv1.LoadBalancing_NODE:
			if src.GetNode() != "" {
				set, scope = pick(func(ep traceEndpoint) bool { return ep.Node == src.GetNode() }), "same node ("+src.GetNode()+")"
			}
		case warrenv1.LoadBalancing_ZONE:
			if src.GetZone() != "" {
				set, scope = pick(func(ep traceEndpoint) bool { return zoneOf[ep.Workload] == src.GetZone() }), "same zone ("+src.GetZone()+")"
			}
		}
		if len(set) > 0 {
			break
		}
	}
	if len(set) == 0 {
		set, scope = pick(func(traceEndpoint) bool { return true }), "any ready endpoint"
	}
	for _, i := range set {
		b.Endpoints[i].Percent = round2(b.Percent / float64(len(set)))
	}
	if len(b.Endpoints) > 0 {
		t.p.Hops[len(t.p.Hops)-1].Details = append(t.p.Hops[len(t.p.Hops)-1].Details,
			fmt.Sprintf("routing preference %s: %s (%d of %d endpoints)", preferenceList(svc), scope, len(set), len(b.Endpoints)))
	}
}

func preferenceList(svc *warrenv1.Service) string {
	var ps []string
	for _, s := range svc.GetLoadBalancing().GetRoutingPreference() {
		ps = append(ps, strings.ToLower(s.String()))
	}
	ps = append(ps, "any")
	return strings.Join(ps, " → ")
}

// identityHop adds the endpoint step for one backend: each endpoint, the
// identity the caller checks and the destination's L4 decision. caller
// is the identity the destination sees ("" for plaintext); via says who
// connects (ztunnel, waypoint or plaintext).
func (t *tracer) identityHop(caller string, b *traceBackend, via string) {
	at := map[string]string{"ztunnel": "ztunnel " + dash(t.p.Source.Node), "waypoint": "waypoint " + t.p.Destination.Waypoint, "plaintext": "pod " + t.p.Source.Pod}[via]
	if len(b.Endpoints) == 0 {
		msg := "no ready endpoint"
		if via == "waypoint" {
			msg += ": the waypoint answers 503 (no healthy upstream)"
		} else {
			msg += ": the connection fails"
		}
		t.hop("endpoint", at, msg, fmt.Sprintf("%s port %d has no ready endpoint with that port", b.Service, b.Port))
		return
	}
	pick := "power of two choices on active requests"
	if via != "waypoint" {
		pick = "by routing preference, evenly within it"
		if via == "plaintext" {
			pick = "kube-proxy's choice"
		}
	}
	h := t.hop("endpoint", at, fmt.Sprintf("%d ready endpoint(s) of %s:%d, %s", len(b.Endpoints), b.Service, b.Port, pick))
	for i := range b.Endpoints {
		ep := &b.Endpoints[i]
		w := t.cfg.Workloads[ep.Workload]
		var line string
		switch {
		case ep.Tunnel != "HBONE":
			ep.Allowed, ep.Policy = true, "not in the mesh: nothing enforces policy"
			line = fmt.Sprintf("%s %s on %s: plain TCP (the pod is not in the mesh: no identity to check, no policy)", ep.Address, ep.Workload, dash(ep.Node))
		case caller == "":
			if w.GetMtlsMode() == warrenv1.MTLSMode_MTLS_STRICT {
				ep.Allowed, ep.Policy = false, "strict mTLS refuses plaintext"
				line = fmt.Sprintf("%s %s on %s: REFUSED, strict mTLS: ztunnel's :15006 refuses plaintext from outside the mesh", ep.Address, ep.Workload, dash(ep.Node))
				break
			}
			v := evaluatePolicies(w.GetAuthorizationPolicies(), t.cfg.Authorizations, authzQuery{Port: portOf(ep.Address), L4Only: true})
			ep.Allowed, ep.Policy = v.Allow, v.Why
			line = fmt.Sprintf("%s %s on %s: plaintext accepted on :15006 (permissive); L4 policy: %s", ep.Address, ep.Workload, dash(ep.Node), verdictWord(v))
		default:
			v := evaluatePolicies(w.GetAuthorizationPolicies(), t.cfg.Authorizations,
				authzQuery{Identity: caller, Namespace: identityNamespace(caller), Port: portOf(ep.Address), L4Only: true})
			ep.Allowed, ep.Policy = v.Allow, v.Why
			ip, _, _ := net.SplitHostPort(ep.Address)
			line = fmt.Sprintf("%s %s on %s: HBONE to %s:15008, the peer must be %s; ztunnel on %s authenticates %s, L4 policy: %s",
				ep.Address, ep.Workload, dash(ep.Node), ip, ep.Identity, dash(ep.Node), caller, verdictWord(v))
		}
		h.Details = append(h.Details, line+fmt.Sprintf(" [%s of requests]", percent(ep.Percent)))
	}
}

func verdictWord(v authzVerdict) string {
	if v.Allow {
		return "allowed (" + v.Why + ")"
	}
	return "DENIED (" + v.Why + ")"
}

func portOf(addr string) uint32 {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return uint32(n)
}

// finish sums up where requests end.
func (t *tracer) finish(ref string, bs []traceBackend) {
	var ok, invalid, noEP, denied float64
	var why []string
	for _, b := range bs {
		switch {
		case b.Invalid != "":
			invalid += b.Percent
			why = append(why, fmt.Sprintf("%s to %s answers 500 (%s)", percent(b.Percent), b.Service, b.Invalid))
		case len(b.Endpoints) == 0:
			noEP += b.Percent
			why = append(why, fmt.Sprintf("%s to %s finds no ready endpoint", percent(b.Percent), b.Service))
		default:
			for _, ep := range b.Endpoints {
				if ep.Allowed {
					ok += ep.Percent
				} else {
					denied += ep.Percent
				}
			}
		}
	}
	if denied > 0 {
		why = append(why, percent(denied)+" refused at the destination")
	}
	r := traceResult{Route: ref, Backends: bs}
	switch {
	case ok > 0 && len(why) == 0:
		r.Outcome = outcomeForwarded
		var parts []string
		for _, b := range bs {
			if b.Percent > 0 {
				parts = append(parts, fmt.Sprintf("%s:%d (%s)", b.Service, b.Port, percent(b.Percent)))
			}
		}
		r.Summary = "forwarded to " + strings.Join(parts, ", ")
	case ok > 0:
		r.Outcome = outcomePartial
		r.Summary = fmt.Sprintf("%s forwarded; %s", percent(ok), strings.Join(why, "; "))
	case invalid > 0 && noEP == 0 && denied == 0:
		r.Outcome, r.Status = outcomeError, http.StatusInternalServerError
		r.Summary = strings.Join(why, "; ")
	case noEP > 0 && invalid == 0 && denied == 0:
		r.Outcome, r.Status = outcomeError, http.StatusServiceUnavailable
		r.Summary = strings.Join(why, "; ")
		if t.p.Destination.Waypoint == "" {
			r.Status = 0
			r.Summary += ": the connection fails"
		}
	case denied > 0 && invalid == 0 && noEP == 0:
		r.Outcome = outcomeRefused
		r.Summary = "refused at the destination: " + firstPolicy(bs)
		if t.p.Destination.Waypoint != "" && t.p.Destination.Kind == "service" {
			r.Status = http.StatusServiceUnavailable
			r.Summary += " (the waypoint's HBONE CONNECT is refused: it answers 503)"
		}
	default:
		r.Outcome = outcomeError
		r.Summary = strings.Join(why, "; ")
	}
	t.p.Result = r
}

func firstPolicy(bs []traceBackend) string {
	for _, b := range bs {
		for _, ep := range b.Endpoints {
			if !ep.Allowed {
				return ep.Policy
			}
		}
	}
	return ""
}

// routeExtras describes timeouts, retries and session persistence.
func routeExtras(r *warrenv1.Route) []string {
	var out []string
	if to := r.GetTimeouts(); to.GetRequestMs() > 0 || to.GetBackendRequestMs() > 0 {
		out = append(out, fmt.Sprintf("timeouts: request %s, per attempt %s", msOrNone(to.GetRequestMs()), msOrNone(to.GetBackendRequestMs())))
	}
	if rt := r.GetRetry(); rt != nil {
		codes := make([]string, 0, len(rt.GetCodes()))
		for _, c := range rt.GetCodes() {
			codes = append(codes, fmt.Sprint(c))
		}
		out = append(out, fmt.Sprintf("retry: up to %d retries on connect failure or %s, backoff %s, within the backend Service's retry budget", rt.GetAttempts(), dash(strings.Join(codes, ",")), msOrNone(rt.GetBackoffMs())))
	}
	if sp := r.GetSessionPersistence(); sp != nil {
		out = append(out, fmt.Sprintf("session persistence (%s %q): a request carrying a live session goes to its endpoint", strings.ToLower(sp.GetType().String()), sp.GetSessionName()))
	}
	return out
}

func msOrNone(ms uint64) string {
	if ms == 0 {
		return "none"
	}
	return fmt.Sprintf("%dms", ms)
}
