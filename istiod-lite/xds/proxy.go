package xds

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// typeState is one proxy's subscription to one type.
type typeState struct {
	wildcard bool
	names    map[string]bool
	// announce holds names explicitly subscribed since the last push: the
	// next push answers for each, with removed_resources if it does not
	// exist, so the proxy stops waiting for it.
	announce map[string]struct{}
	// mustRespond: the first request of a type always gets a response,
	// even an empty one (the proxy then knows it is in sync).
	mustRespond bool
	// has is what the proxy holds assuming every pending push is
	// accepted; acked is what it confirmed. A NACK rolls has back to
	// acked for the resources of the rejected push.
	has, acked map[string]*resource
	pending    []*sentPush
	// retry holds groups of names from rejected responses to offer again,
	// one response per group.
	retry [][]string

	subscribedAt time.Time
	pushes       uint64
	acks, nacks  uint64
	lastSent     time.Time
	lastNonce    string
	lastCount    int
	lastRemoved  int
	lastBytes    int
	lastAck      time.Time
	lastAckNonce string
	lastNack     *NACK
	// rejected maps resources the proxy refused to the refused version,
	// until it accepts a version of them.
	rejected map[string]string
}

type sentPush struct {
	nonce   string
	upserts []*resource
	removes []string
	sent    time.Time
}

func newTypeState() *typeState {
	return &typeState{
		names:        map[string]bool{},
		announce:     map[string]struct{}{},
		has:          map[string]*resource{},
		acked:        map[string]*resource{},
		rejected:     map[string]string{},
		subscribedAt: time.Now(),
	}
}

func (ts *typeState) subscribes(name string) bool { return ts.wildcard || ts.names[name] }

// handleRequest applies one request: an ACK or NACK, subscription changes,
// or the first request of a type.
func (s *Server) handleRequest(p *Proxy, req *discoveryv3.DeltaDiscoveryRequest) error {
	if n := req.GetNode().GetId(); n != "" && n != p.ID {
		return status.Errorf(codes.PermissionDenied, "xds: stream of %s switched node id to %q", p.ID, n)
	}
	t := req.GetTypeUrl()
	if t == "" {
		if len(req.GetResourceNamesSubscribe())+len(req.GetResourceNamesUnsubscribe()) > 0 || req.GetResponseNonce() != "" {
			return status.Error(codes.InvalidArgument, "xds: request without type_url")
		}
		return nil // a request that only identifies the node
	}
	changed, wake := false, false
	p.mu.Lock()
	ts := p.types[t]
	if nonce := req.GetResponseNonce(); nonce != "" && ts != nil {
		changed, wake = s.answer(p, ts, t, nonce, req.GetErrorDetail())
	}
	if ts == nil {
		ts = newTypeState()
		p.types[t] = ts
		p.order = append(p.order, t)
		ts.wildcard = len(req.GetResourceNamesSubscribe()) == 0
		for _, n := range req.GetResourceNamesSubscribe() {
			if n == "*" {
				ts.wildcard = true
				continue
			}
			ts.names[n] = true
			ts.announce[n] = struct{}{}
		}
		for n, v := range req.GetInitialResourceVersions() {
			if ts.subscribes(n) {
				r := versionOnly(n, v)
				ts.has[n], ts.acked[n] = r, r
			}
		}
		ts.mustRespond = true
		p.dirtyAll[t] = true
		wake, changed = true, true
	} else {
		for _, n := range req.GetResourceNamesSubscribe() {
			switch {
			case n == "*":
				if !ts.wildcard {
					ts.wildcard = true
					p.dirtyAll[t] = true
					wake = true
				}
			case !ts.names[n]:
				ts.names[n] = true
				ts.announce[n] = struct{}{}
				wake = true
			}
		}
		for _, n := range req.GetResourceNamesUnsubscribe() {
			if n == "*" {
				ts.wildcard = false
			} else {
				delete(ts.names, n)
				delete(ts.announce, n)
			}
			wake = true
		}
		if len(req.GetResourceNamesUnsubscribe()) > 0 {
			// The proxy forgets what it unsubscribed from by itself.
			for n := range ts.has {
				if !ts.subscribes(n) {
					delete(ts.has, n)
				}
			}
			for n := range ts.acked {
				if !ts.subscribes(n) {
					delete(ts.acked, n)
				}
			}
		}
		changed = changed || wake
	}
	p.mu.Unlock()
	if changed {
		s.acks.broadcast()
	}
	if wake {
		p.wake()
	}
	return nil
}

// answer records the ACK or NACK of nonce; it reports whether the nonce
// was one still pending. Called with p.mu held.
func (s *Server) answer(p *Proxy, ts *typeState, t, nonce string, detail *rpcstatus.Status) (answered, wake bool) {
	idx := slices.IndexFunc(ts.pending, func(sp *sentPush) bool { return sp.nonce == nonce })
	if idx < 0 {
		return false, false // stale or forgotten nonce
	}
	// Responses are answered in order; earlier unanswered ones were
	// applied by the proxy before this one.
	for _, sp := range ts.pending[:idx] {
		ts.accept(sp)
	}
	sp := ts.pending[idx]
	// Shift in place: the backing array is reused by the next push.
	n := copy(ts.pending, ts.pending[idx+1:])
	clear(ts.pending[n:])
	ts.pending = ts.pending[:n]
	now := time.Now()
	short := shortType(t)
	if detail == nil {
		ts.accept(sp)
		ts.acks++
		ts.lastAck, ts.lastAckNonce = now, nonce
		s.m.acks.WithLabelValues(short).Inc()
		return true, false
	}
	// NACK: the proxy kept its previous resources; so do we in our view
	// of it.
	for _, r := range sp.upserts {
		if ts.has[r.name] == r {
			if a := ts.acked[r.name]; a != nil {
				ts.has[r.name] = a
			} else {
				delete(ts.has, r.name)
			}
		}
	}
	for _, n := range sp.removes {
		if _, ok := ts.has[n]; !ok {
			if a := ts.acked[n]; a != nil {
				ts.has[n] = a
			}
		}
	}
	// A NACK rejects a whole response. When it held several resources,
	// offer them again in two halves, each its own response: good
	// resources get through and a bad one is isolated in at most
	// 2·log2(n) responses. A NACK of a single resource is final until
	// that resource changes.
	if names := sp.names(); len(names) > 1 {
		half := len(names) / 2
		ts.retry = append(ts.retry, names[:half], names[half:])
		wake = true
	}
	ts.nacks++
	for _, r := range sp.upserts {
		ts.rejected[r.name] = r.version
	}
	ts.lastNack = &NACK{Nonce: nonce, Code: codes.Code(detail.GetCode()).String(), Error: detail.GetMessage(), Time: now}
	for _, r := range sp.upserts {
		ts.lastNack.Resources = append(ts.lastNack.Resources, r.name+"@"+r.version)
	}
	s.m.nacks.WithLabelValues(short).Inc()
	s.opts.Logger.Warn("xds: proxy rejected configuration", "proxy", p.Conn, "type", t, "nonce", nonce, "error", detail.GetMessage())
	return true, wake
}

// names lists the resources a push carried (upserts, then removals).
func (sp *sentPush) names() []string {
	out := make([]string, 0, len(sp.upserts)+len(sp.removes))
	for _, r := range sp.upserts {
		out = append(out, r.name)
	}
	return append(out, sp.removes...)
}

// accept records what an accepted push gave the proxy.
func (ts *typeState) accept(sp *sentPush) {
	for _, r := range sp.upserts {
		if ts.subscribes(r.name) {
			ts.acked[r.name] = r
		}
		delete(ts.rejected, r.name)
	}
	for _, n := range sp.removes {
		delete(ts.acked, n)
		delete(ts.rejected, n)
	}
}

// outgoing is a built response with what the metrics need.
type outgoing struct {
	resp      *discoveryv3.DeltaDiscoveryResponse
	short     string
	since     time.Time
	fromStore bool
}

// push sends p what changed for it since its last push.
func (s *Server) push(stream deltaStream, p *Proxy) error {
	for _, o := range s.build(p) {
		size := proto.Size(o.resp)
		if err := stream.Send(o.resp); err != nil {
			return err
		}
		s.m.pushes.WithLabelValues(o.short).Inc()
		s.m.bytes.WithLabelValues(o.short).Add(float64(size))
		s.m.resources.WithLabelValues(o.short).Add(float64(len(o.resp.Resources) + len(o.resp.RemovedResources)))
		s.counters.pushes.Add(1)
		s.counters.bytes.Add(uint64(size))
		if o.fromStore {
			s.m.latency.Observe(time.Since(o.since).Seconds())
		}
		p.mu.Lock()
		if ts := p.types[o.resp.TypeUrl]; ts != nil && ts.lastNonce == o.resp.Nonce {
			ts.lastBytes = size
		}
		p.mu.Unlock()
	}
	return nil
}

// build computes p's responses and records them as pending.
func (s *Server) build(p *Proxy) []outgoing {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []outgoing
	for _, t := range p.order {
		ts := p.types[t]
		store := s.store[t]
		// Resources of a rejected response go again in smaller groups
		// first, each group its own response.
		groups := ts.retry
		ts.retry = nil
		for _, g := range groups {
			ups, rems := s.diff(p, ts, t, store, g)
			if len(ups)+len(rems) > 0 {
				out = append(out, s.emit(ts, t, [][]*resource{ups}, rems, outgoing{short: shortType(t)})...)
			}
		}
		all, names := p.dirtyAll[t], p.dirty[t]
		since, fromStore := p.dirtySince[t]
		if !all && len(names) == 0 && len(ts.announce) == 0 && !ts.mustRespond {
			continue
		}
		delete(p.dirtyAll, t)
		delete(p.dirtySince, t)
		var cand []string
		if all {
			set := make(map[string]struct{}, len(store)+len(ts.has))
			for n := range store {
				set[n] = struct{}{}
			}
			for n := range ts.has {
				set[n] = struct{}{}
			}
			for n := range ts.names {
				set[n] = struct{}{}
			}
			maps.Copy(set, ts.announce)
			cand = slices.Sorted(maps.Keys(set))
		} else {
			cand = make([]string, 0, len(names)+len(ts.announce))
			for n := range names {
				cand = append(cand, n)
			}
			for n := range ts.announce {
				if _, dup := names[n]; !dup {
					cand = append(cand, n)
				}
			}
			slices.Sort(cand)
		}
		clear(names)
		ups, rems := s.diff(p, ts, t, store, cand)
		clear(ts.announce)
		if len(ups) == 0 && len(rems) == 0 && !ts.mustRespond {
			continue
		}
		ts.mustRespond = false
		out = append(out, s.emit(ts, t, s.chunks(ups), rems, outgoing{short: shortType(t), since: since, fromStore: fromStore})...)
	}
	return out
}

// diff compares what p should hold of the named resources with what it
// holds. Called with s.mu (read) and p.mu held.
func (s *Server) diff(p *Proxy, ts *typeState, t string, store map[string]*resource, names []string) (ups []*resource, rems []string) {
	for _, n := range names {
		r := store[n]
		want := r != nil && ts.subscribes(n) && s.opts.Scope(p, t, n, r.msg)
		cur := ts.has[n]
		_, announced := ts.announce[n]
		switch {
		case want && (cur == nil || cur.version != r.version):
			ups = append(ups, r)
		case want && cur.msg == nil:
			// Claimed on reconnect with the current version: now we
			// know its content too.
			if ts.acked[n] == cur {
				ts.acked[n] = r
			}
			ts.has[n] = r
		case !want && (cur != nil || announced):
			rems = append(rems, n)
		}
	}
	return ups, rems
}

// emit turns chunks of upserts (removals ride on the last chunk) into
// responses, recording each as pending. Called with p.mu held.
func (s *Server) emit(ts *typeState, t string, chunks [][]*resource, rems []string, meta outgoing) []outgoing {
	out := make([]outgoing, 0, len(chunks))
	for i, chunk := range chunks {
		resp := &discoveryv3.DeltaDiscoveryResponse{
			TypeUrl:           t,
			Nonce:             strconv.FormatUint(s.nonceSeq.Add(1), 10),
			SystemVersionInfo: strconv.FormatUint(s.generation, 10),
			Resources:         make([]*discoveryv3.Resource, 0, len(chunk)),
		}
		for _, r := range chunk {
			resp.Resources = append(resp.Resources, &discoveryv3.Resource{Name: r.name, Version: r.version, Resource: r.any})
			ts.has[r.name] = r
		}
		sp := &sentPush{nonce: resp.Nonce, upserts: chunk, sent: time.Now()}
		if i == len(chunks)-1 {
			resp.RemovedResources = rems
			sp.removes = rems
			for _, n := range rems {
				delete(ts.has, n)
			}
		}
		ts.pending = append(ts.pending, sp)
		if len(ts.pending) > maxPendingPushes {
			ts.pending = slices.Delete(ts.pending, 0, len(ts.pending)-maxPendingPushes)
		}
		ts.pushes++
		ts.lastSent, ts.lastNonce = sp.sent, sp.nonce
		ts.lastCount, ts.lastRemoved = len(chunk), len(sp.removes)
		o := meta
		o.resp = resp
		out = append(out, o)
	}
	return out
}

// chunks splits ups into responses of at most MaxResponseBytes of
// payload; there is always at least one (possibly empty) chunk.
func (s *Server) chunks(ups []*resource) [][]*resource {
	if len(ups) == 0 {
		return [][]*resource{nil}
	}
	var out [][]*resource
	start, size := 0, 0
	for i, r := range ups {
		n := len(r.any.Value) + len(r.any.TypeUrl) + len(r.name) + len(r.version) + 16
		if i > start && size+n > s.opts.MaxResponseBytes {
			out = append(out, ups[start:i])
			start, size = i, 0
		}
		size += n
	}
	return append(out, ups[start:])
}

func shortType(t string) string {
	if i := lastDot(t); i >= 0 {
		return t[i+1:]
	}
	return t
}

func lastDot(t string) int {
	for i := len(t) - 1; i >= 0; i-- {
		if t[i] == '.' || t[i] == '/' {
			return i
		}
	}
	return -1
}

func describeWait(p *Proxy, ts *typeState, name string) string {
	cur := "nothing"
	if a := ts.acked[name]; a != nil {
		cur = a.version
	}
	if v, ok := ts.rejected[name]; ok && ts.lastNack != nil {
		return fmt.Sprintf("%s (holds %s; rejected %s: %s)", p.Conn, cur, v, ts.lastNack.Error)
	}
	return fmt.Sprintf("%s (holds %s; no ACK yet)", p.Conn, cur)
}
