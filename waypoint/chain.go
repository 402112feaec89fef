package waypoint

// The waypoint's request path, one ordered chain read top to bottom
// (DESIGN §7, "one filter chain order in one file"):
//
//	ServeHTTP
//	  0. begin      connection meta, config snapshot, path normalization, hop-by-hop headers, traceparent
//	  1. authorize  L7 AuthorizationPolicies of the destination Service: a matching DENY wins; any ALLOW
//	                policy makes the default deny → 403 (counted)
//	  2. route      the client namespace's consumer table, else the producer table; first match wins;
//	                none → 404 (gRPC: UNIMPLEMENTED); no table → the Service's own endpoints
//	  3. filter     CORS preflight and RequestRedirect answer here; URLRewrite; request header
//	                modifiers; request body kept for replay when retries or mirrors need it; mirrors
//	                fire and forget
//	  4. forward    pick the backend by weight (invalid → 500) and loop over attempts: retry codes,
//	                attempts and backoff within timeouts.request and the backend Service's retry budget
//	                (exhausted → the original failure goes back, counted)
//	  5.   pick     endpoint: session persistence, else power of two choices on active requests,
//	                skipping endpoints ejected for failing connects and those already tried
//	  6.   attempt  upstream round trip over pooled HTTP/1.1 or h2c, bounded by timeouts.backendRequest
//	  7. respond    response header modifiers, CORS headers, session cookie/header; body streamed,
//	                trailers kept; failures as HTTP status or, for gRPC, trailers-only grpc-status
//	  8. finish     istio_requests_total, istio_request_duration_milliseconds, access log
//
// Opaque TCP takes the short path in tcp.go (L4 authorization, default
// endpoints, splice).

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/warren-mesh/warren/waypoint/accesslog"
	"github.com/warren-mesh/warren/waypoint/authz"
	"github.com/warren-mesh/warren/waypoint/filters"
	"github.com/warren-mesh/warren/waypoint/lb"
	"github.com/warren-mesh/warren/waypoint/listener"
	"github.com/warren-mesh/warren/waypoint/router"
	"github.com/warren-mesh/warren/waypoint/upstream"
)

// exchange is one request's state along the chain.
type exchange struct {
	w     http.ResponseWriter
	r     *http.Request
	start time.Time
	meta  *listener.Meta
	snap  *snapshot
	svc   *serviceState
	path  string // normalized, escaped, without query
	grpc  bool
	up    string // Upgrade protocol requested ("" for none)
	trace string

	rs      *routeState
	backend *backendState
	ep      *lb.Endpoint
	session lb.Session
	sticky  bool

	replay     []byte // request body kept for retries/mirrors
	replayable bool
	bodyIn     countingReader

	status     int
	grpcStatus string
	bytesOut   int64
	attempts   int
	retries    int
	flags      string
	err        string
	cleanup    []func()
}

var exchangePool = sync.Pool{New: func() any { return new(exchange) }}

// ServeHTTP runs one request through the chain.
func (e *Engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := e.begin(w, r)
	defer e.finish(x)
	if !e.authorize(x) {
		return
	}
	if !e.route(x) {
		return
	}
	if !e.filter(x) {
		return
	}
	e.forward(x)
}

// 0. begin
func (e *Engine) begin(w http.ResponseWriter, r *http.Request) *exchange {
	x := exchangePool.Get().(*exchange)
	*x = exchange{w: w, r: r, start: e.now(), cleanup: x.cleanup[:0]}
	if m, ok := listener.MetaFrom(r.Context()); ok {
		x.meta = m
	} else {
		x.meta = &listener.Meta{}
	}
	x.snap = e.store.load()
	x.svc = x.snap.destination(x.meta)
	raw := r.URL.EscapedPath()
	x.path = router.NormalizePath(raw)
	if x.path != raw {
		filters.SetPath(r, x.path)
	}
	x.grpc = isGRPC(r)
	x.up = removeHopByHop(r.Header)
	if r.Body != nil && r.Body != http.NoBody {
		x.bodyIn.r = r.Body
		r.Body = &x.bodyIn
	}
	x.replayable = r.ContentLength == 0 && (r.Body == nil || r.Body == http.NoBody)
	if x.meta.Traceparent != "" && len(r.Header["Traceparent"]) == 0 {
		// The request carries no trace of its own: continue the tunnel's.
		r.Header["Traceparent"] = []string{x.meta.Traceparent}
	}
	x.trace = traceparent(r.Header)
	return x
}

// 1. authorize
func (e *Engine) authorize(x *exchange) bool {
	if x.svc == nil || len(x.svc.policies) == 0 {
		return true
	}
	d := authz.Evaluate(x.svc.policies, &authz.Request{
		Source: authz.Source{Identity: x.meta.SourceIdentity, Namespace: x.meta.SourceNamespace},
		Port:   x.meta.Port, Method: x.r.Method, Path: x.path, Header: x.r.Header})
	if d.Allow {
		return true
	}
	e.metrics.denied.WithLabelValues(x.svc.key, d.Policy, d.Reason).Inc()
	x.flags = "DENY"
	e.fail(x, http.StatusForbidden, "RBAC: access denied")
	return false
}

// 2. route
func (e *Engine) route(x *exchange) bool {
	if x.svc == nil {
		x.flags = "NC"
		e.fail(x, http.StatusServiceUnavailable, "no configuration for "+destKey(x.meta))
		return false
	}
	tbl, _ := x.svc.l7.Select(x.meta.Port, x.meta.SourceNamespace)
	if tbl == nil {
		if x.rs = x.svc.defaultRoute(x.meta.Port); x.rs == nil {
			x.flags = "NR"
			e.fail(x, http.StatusNotFound, "no route: port not served")
			return false
		}
		return true
	}
	q := router.FromHTTP(x.r, x.path)
	rt := tbl.Match(&q)
	if rt == nil {
		x.flags = "NR"
		if tbl.GRPC() {
			x.grpc = true
		}
		e.fail(x, http.StatusNotFound, "no route")
		return false
	}
	x.rs = rt.Data.(*routeState)
	return true
}

// 3. filter
func (e *Engine) filter(x *exchange) bool {
	if fs := x.rs.filters; fs != nil {
		if fs.CORS != nil && filters.IsPreflight(x.r) {
			e.answer(x, fs.CORS.Preflight(x.r, x.w.Header()))
			return false
		}
		if fs.Redirect != nil {
			loc, code := filters.RedirectLocation(fs.Redirect, x.r, x.path, x.rs.matchedPrefix, x.meta.Port)
			x.w.Header().Set("Location", loc)
			e.answer(x, code)
			return false
		}
		filters.Rewrite(fs.Rewrite, x.r, x.path, x.rs.matchedPrefix)
		fs.ApplyRequest(x.r)
	}
	if x.rs.replay {
		e.keepBody(x)
	}
	for _, m := range x.rs.mirrors {
		e.mirror(x, m)
	}
	return true
}

// 4. forward: backend, then attempts with retries.
func (e *Engine) forward(x *exchange) {
	rs := x.rs
	ctx := x.r.Context()
	if rs.requestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rs.requestTimeout)
		x.cleanup = append(x.cleanup, cancel)
	}
	b, sticky := e.pickBackend(x)
	switch {
	case b == nil:
		x.flags = "IB"
		e.fail(x, http.StatusInternalServerError, "no backend: every weight is 0")
		return
	case b.invalid != "":
		x.backend, x.flags = b, "IB"
		e.fail(x, http.StatusInternalServerError, "invalid backend: "+b.invalid)
		return
	}
	x.backend = b
	if b.filters != nil {
		b.filters.ApplyRequest(x.r)
	}
	for _, m := range b.mirrors {
		e.mirror(x, m)
	}
	b.budget.Request()
	var tried []*lb.Endpoint
	for {
		// 5. pick
		ep := sticky
		sticky = nil
		if ep == nil {
			ep = b.set.Pick(e.now(), tried)
		}
		if ep == nil {
			x.flags = joinFlags(x.flags, "NE")
			e.fail(x, http.StatusServiceUnavailable, "no healthy upstream")
			return
		}
		tried = append(tried, ep)
		// 6. attempt
		res := e.attempt(ctx, x, b, ep)
		pol := rs.retry
		retry := pol != nil && x.retries < pol.Attempts && x.replayable && ctx.Err() == nil &&
			(res.connectFailed || pol.RetryOn(res.status))
		if retry && !b.budget.TryRetry() {
			e.metrics.budget.WithLabelValues(b.key).Inc()
			res.flags = joinFlags(res.flags, "RBE")
			retry = false
		}
		if !retry {
			if x.retries > 0 && res.status >= 500 {
				res.flags = joinFlags(res.flags, "URX")
			}
			e.respond(x, b, ep, res)
			return
		}
		res.discard()
		x.retries++
		e.metrics.retries.WithLabelValues(b.key).Inc()
		t := time.NewTimer(pol.Delay(x.retries))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			x.flags = joinFlags(x.flags, "RT")
			e.fail(x, http.StatusGatewayTimeout, "request timeout")
			return
		}
	}
}

// pickBackend chooses the backend: the one holding the session's
// endpoint when the request carries a live session, else by weight.
func (e *Engine) pickBackend(x *exchange) (*backendState, *lb.Endpoint) {
	rs := x.rs
	if sp := rs.session; sp != nil {
		now := e.now()
		if s, ok := lb.ReadSession(x.r, sp, now); ok {
			for _, b := range rs.backends {
				if b.invalid != "" {
					continue
				}
				if ep := b.set.Find(s.Addr); ep != nil && !ep.Ejected(now) {
					x.session, x.sticky = s, true
					return b, ep
				}
			}
		}
	}
	i := lb.PickWeighted(rs.weights)
	if i < 0 {
		return nil, nil
	}
	return rs.backends[i], nil
}

// result is one attempt's outcome.
type result struct {
	resp          *http.Response
	status        int
	flags         string
	err           error
	connectFailed bool
	release       func()
}

// discard releases an attempt that will not be answered.
func (r *result) discard() {
	if r.resp != nil {
		upstream.Drain(r.resp.Body)
	}
	if r.release != nil {
		r.release()
	}
}

// 6. attempt
func (e *Engine) attempt(ctx context.Context, x *exchange, b *backendState, ep *lb.Endpoint) result {
	x.attempts++
	actx, cancel := ctx, context.CancelFunc(func() {})
	if x.rs.backendTimeout > 0 {
		actx, cancel = context.WithTimeout(ctx, x.rs.backendTimeout)
	}
	// The request's traceparent (the waypoint's span) goes to the dial
	// context, for the CONNECT of a tunnel opened for this attempt.
	out := x.r.WithContext(upstream.WithTraceparent(actx, x.outTraceparent()))
	out.RequestURI = ""
	if x.replayable {
		out.Body, out.ContentLength = nil, int64(len(x.replay))
		if len(x.replay) > 0 {
			out.Body = io.NopCloser(bytes.NewReader(x.replay))
		}
	}
	proto := b.proto
	if x.grpc {
		proto = upstream.H2C
	}
	done := ep.Start()
	release := func() { cancel(); done() }
	resp, err := e.client.RoundTrip(out, ep.Endpoint, proto)
	now := e.now()
	switch {
	case err == nil:
		ep.ReportConnect(true, now)
		return result{resp: resp, status: resp.StatusCode, release: release}
	case x.bodyIn.err != nil && x.r.Context().Err() == nil:
		// The client's body was malformed (bad chunking, short body).
		release()
		return result{status: http.StatusBadRequest, flags: "DPE", err: x.bodyIn.err}
	case upstream.IsConnectError(err):
		if ep.ReportConnect(false, now) {
			e.metrics.ejections.WithLabelValues(b.key).Inc()
		}
		release()
		return result{status: http.StatusServiceUnavailable, flags: "UF", err: err, connectFailed: true}
	case ctx.Err() != nil && x.r.Context().Err() == nil:
		release()
		return result{status: http.StatusGatewayTimeout, flags: "RT", err: err}
	case actx.Err() != nil && ctx.Err() == nil:
		release()
		return result{status: http.StatusGatewayTimeout, flags: "UT", err: err}
	case x.r.Context().Err() != nil:
		release()
		return result{status: 499, flags: "DC", err: err}
	}
	release()
	return result{status: http.StatusBadGateway, flags: "UC", err: err}
}

// 7. respond
func (e *Engine) respond(x *exchange, b *backendState, ep *lb.Endpoint, res result) {
	x.ep = ep
	x.flags = joinFlags(x.flags, res.flags)
	if res.resp == nil {
		if res.err != nil {
			x.err = res.err.Error()
		}
		msg := "upstream error"
		switch res.flags {
		case "UF":
			msg = "upstream connect error"
		case "UT", "RT":
			msg = "upstream request timeout"
		}
		e.fail(x, res.status, msg)
		return
	}
	x.cleanup = append(x.cleanup, res.release)
	resp := res.resp
	defer resp.Body.Close()
	h := x.w.Header()
	removeHopByHop(resp.Header)
	for k, vs := range resp.Header {
		h[k] = vs
	}
	for k := range resp.Trailer {
		h.Add("Trailer", k)
	}
	x.rs.filters.ApplyResponse(h)
	b.filters.ApplyResponse(h)
	if fs := x.rs.filters; fs != nil && fs.CORS != nil {
		fs.CORS.Actual(x.r, h)
	}
	if sp := x.rs.session; sp != nil {
		now := e.now()
		switch {
		case !x.sticky || x.session.Addr != ep.Addr:
			lb.WriteSession(h, sp, lb.EncodeSession(ep.Addr, now, now))
		case x.session.IdleTimeout > 0:
			lb.WriteSession(h, sp, lb.EncodeSession(ep.Addr, x.session.Created, now))
		}
	}
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // a proxy never sniffs a content type
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		e.upgrade(x, resp)
		return
	}
	x.status = resp.StatusCode
	x.grpcStatus = resp.Header.Get("Grpc-Status")
	x.w.WriteHeader(resp.StatusCode)
	n, err := copyBody(x.w, resp.Body, resp.ContentLength < 0 || x.grpc)
	x.bytesOut += n
	if err != nil {
		x.flags = joinFlags(x.flags, "UPE")
		x.err = err.Error()
	}
	for k, vs := range resp.Trailer {
		if _, announced := h[k]; !announced {
			k = http.TrailerPrefix + k
		}
		h[k] = vs
		if strings.EqualFold(k, "Grpc-Status") {
			x.grpcStatus = vs[0]
		}
	}
	if gs := resp.Trailer.Get("Grpc-Status"); gs != "" {
		x.grpcStatus = gs
	}
}

// 8. finish
func (e *Engine) finish(x *exchange) {
	for i := len(x.cleanup) - 1; i >= 0; i-- {
		x.cleanup[i]()
	}
	end := e.now()
	dur := end.Sub(x.start)
	dstSvc, dstNS := destKey(x.meta), ""
	if x.svc != nil {
		dstSvc, dstNS = x.svc.name, x.svc.ns
	}
	srcW, srcNS := x.snap.sourceWorkload(x.meta.SourceAddr)
	if x.meta.SourceNamespace != "" {
		srcNS = x.meta.SourceNamespace
	}
	dstW := "unknown"
	if x.ep != nil && x.ep.WorkloadName != "" {
		dstW = x.ep.WorkloadName
	}
	proto := "http"
	if x.grpc {
		proto = "grpc"
	}
	e.metrics.observe(labelKey{srcWorkload: srcW, srcNS: srcNS, srcPrincipal: principal(x.meta.SourceIdentity),
		dstService: dstSvc, dstNS: dstNS, dstWorkload: dstW, proto: proto, code: x.status, grpc: x.grpcStatus,
		flags: flagsLabel(x.flags)}, float64(dur)/float64(time.Millisecond))
	if e.log != nil {
		ent := &accesslog.Entry{Start: x.start, Source: x.meta.SourceIdentity, SourceNamespace: x.meta.SourceNamespace,
			SourceAddr: x.meta.SourceAddr, Destination: destKey(x.meta), Port: x.meta.Port, Protocol: x.r.Proto,
			Method: x.r.Method, Authority: x.r.Host, Path: x.r.URL.RequestURI(), Status: x.status, GRPCStatus: x.grpcStatus,
			DurationMs: float64(dur.Microseconds()) / 1000, Attempts: x.attempts, Retries: x.retries,
			BytesIn: x.bodyIn.n, BytesOut: x.bytesOut, Flags: x.flags, TraceID: x.trace, Error: x.err}
		if x.rs != nil {
			ent.Route = x.rs.ref
		}
		if x.backend != nil {
			ent.Backend = x.backend.key
		}
		if x.ep != nil {
			ent.Endpoint = x.ep.Addr
		}
		e.log.Log(ent)
	}
	clear(x.cleanup)
	cleanup := x.cleanup[:0]
	*x = exchange{cleanup: cleanup}
	exchangePool.Put(x)
}

// outTraceparent is the request's current traceparent (set in begin).
func (x *exchange) outTraceparent() string {
	if v := x.r.Header["Traceparent"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// destKey names the connection's destination: the Service key, or the
// Workload key for workload-addressed traffic.
func destKey(m *listener.Meta) string {
	if m.Workload != "" {
		return m.Workload
	}
	return m.Service
}
