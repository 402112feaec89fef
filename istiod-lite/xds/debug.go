package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
)

// Per-type sync states in ProxyStatus, as warrenctl proxy-status shows them.
const (
	// StatusSynced: the proxy ACKed exactly what it should hold.
	StatusSynced = "SYNCED"
	// StatusStale: a response was sent and not answered yet.
	StatusStale = "STALE"
	// StatusNACKed: the proxy rejected a version that is still current and
	// runs on its last good configuration of that resource.
	StatusNACKed = "NACKED"
	// StatusPending: a change is waiting for the debounce window.
	StatusPending = "PENDING"
)

// NACK describes a rejected response.
type NACK struct {
	Nonce string `json:"nonce"`
	Code  string `json:"code"`
	Error string `json:"error"`
	// Resources were in the rejected response ("name@version").
	Resources []string  `json:"resources,omitempty"`
	Time      time.Time `json:"time"`
}

// ProxyStatus is one stream in /debug/syncz.
type ProxyStatus struct {
	// Proxy is the node ID; Conn tells two streams of one proxy apart.
	Proxy          string                `json:"proxy"`
	Conn           string                `json:"conn"`
	Kind           string                `json:"kind"`
	Caller         string                `json:"caller,omitempty"`
	Peer           string                `json:"peer,omitempty"`
	ConnectedSince time.Time             `json:"connectedSince"`
	Types          map[string]TypeStatus `json:"types"`
}

// TypeStatus is one proxy's state for one type URL.
type TypeStatus struct {
	Status   string   `json:"status"`
	Wildcard bool     `json:"wildcard"`
	Names    []string `json:"names,omitempty"`
	// Resources the proxy ACKed, and Version, a digest of their
	// name@version list; DesiredVersion digests what it should hold.
	Resources      int    `json:"resources"`
	Version        string `json:"version"`
	DesiredVersion string `json:"desiredVersion"`
	// PendingResponses were sent and not answered yet.
	PendingResponses  int       `json:"pendingResponses"`
	Pushes            uint64    `json:"pushes"`
	ACKs              uint64    `json:"acks"`
	NACKs             uint64    `json:"nacks"`
	LastSent          time.Time `json:"lastSent,omitzero"`
	LastNonce         string    `json:"lastNonce,omitempty"`
	LastSentResources int       `json:"lastSentResources"`
	LastSentRemoved   int       `json:"lastSentRemoved"`
	LastSentBytes     int       `json:"lastSentBytes"`
	LastACK           time.Time `json:"lastAck,omitzero"`
	LastACKNonce      string    `json:"lastAckNonce,omitempty"`
	LastNACK          *NACK     `json:"lastNack,omitempty"`
}

// Status is /debug/status.
type Status struct {
	Connected int            `json:"connected"`
	ByKind    map[string]int `json:"byKind"`
	// Resources counts stored resources per type URL.
	Resources  map[string]int `json:"resources"`
	Generation uint64         `json:"generation"`
	LastUpdate time.Time      `json:"lastUpdate,omitzero"`
	Debounce   string         `json:"debounce"`
	Pushes     uint64         `json:"pushes"`
	PushBytes  uint64         `json:"pushBytes"`
	// States counts (proxy, type) pairs per sync state.
	States map[string]int `json:"states"`
}

// ConfigDump is what one proxy holds, per /debug/config_dump.
type ConfigDump struct {
	Proxy string `json:"proxy"`
	Conn  string `json:"conn"`
	// Types: type URL → resource name → the ACKed resource.
	Types map[string]map[string]DumpedResource `json:"types"`
	// Unacked lists resources sent and not yet ACKed ("name@version"),
	// per type URL.
	Unacked map[string][]string `json:"unacked,omitempty"`
}

// DumpedResource is one resource a proxy holds.
type DumpedResource struct {
	Version  string          `json:"version"`
	Resource json.RawMessage `json:"resource,omitempty"`
	// Note explains a missing Resource.
	Note string `json:"note,omitempty"`
}

// Syncz reports every connected stream (what /debug/syncz serves).
//
// The store lock is taken per proxy, so a scrape of many proxies never
// holds up Update for long.
func (s *Server) Syncz() []ProxyStatus {
	ps := s.Proxies()
	out := make([]ProxyStatus, 0, len(ps))
	for _, p := range ps {
		out = append(out, s.proxyStatus(p))
	}
	return out
}

func (s *Server) proxyStatus(p *Proxy) ProxyStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := ProxyStatus{Proxy: p.ID, Conn: p.Conn, Kind: string(p.Node.Kind), Peer: p.Peer, ConnectedSince: p.ConnectedAt, Types: map[string]TypeStatus{}}
	if p.Caller != nil {
		st.Caller = p.Caller.ID.String()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for t, ts := range p.types {
		out := TypeStatus{
			Wildcard:          ts.wildcard,
			Names:             slices.Sorted(maps.Keys(ts.names)),
			Resources:         len(ts.acked),
			Version:           digest(ts.acked),
			DesiredVersion:    digest(s.desired(p, t, ts)),
			PendingResponses:  len(ts.pending),
			Pushes:            ts.pushes,
			ACKs:              ts.acks,
			NACKs:             ts.nacks,
			LastSent:          ts.lastSent,
			LastNonce:         ts.lastNonce,
			LastSentResources: ts.lastCount,
			LastSentRemoved:   ts.lastRemoved,
			LastSentBytes:     ts.lastBytes,
			LastACK:           ts.lastAck,
			LastACKNonce:      ts.lastAckNonce,
			LastNACK:          ts.lastNack,
		}
		switch {
		case len(ts.pending) > 0:
			out.Status = StatusStale
		case out.Version == out.DesiredVersion:
			out.Status = StatusSynced
		case s.stillRejected(t, ts):
			out.Status = StatusNACKed
		default:
			out.Status = StatusPending
		}
		st.Types[t] = out
	}
	return st
}

// stillRejected reports whether the proxy refused a version that is still
// the stored one; s.mu and p.mu held.
func (s *Server) stillRejected(t string, ts *typeState) bool {
	for n, v := range ts.rejected {
		if r := s.store[t][n]; r != nil && r.version == v {
			return true
		}
	}
	return false
}

// desired is what p should hold of type t; s.mu and p.mu held.
func (s *Server) desired(p *Proxy, t string, ts *typeState) map[string]*resource {
	out := map[string]*resource{}
	add := func(n string, r *resource) {
		if r != nil && ts.subscribes(n) && s.opts.Scope(p, t, n, r.msg) {
			out[n] = r
		}
	}
	if ts.wildcard {
		for n, r := range s.store[t] {
			add(n, r)
		}
	} else {
		for n := range ts.names {
			add(n, s.store[t][n])
		}
	}
	return out
}

// digest is a short hash of a name → version set, for comparing sets.
func digest(set map[string]*resource) string {
	h := sha256.New()
	for _, n := range slices.Sorted(maps.Keys(set)) {
		fmt.Fprintf(h, "%s\x00%s\n", n, set[n].version)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Status summarizes the server (what /debug/status serves).
func (s *Server) Status() Status {
	st := Status{
		ByKind:    map[string]int{},
		Resources: map[string]int{},
		States:    map[string]int{},
		Pushes:    s.counters.pushes.Load(),
		PushBytes: s.counters.bytes.Load(),
		Debounce:  "none",
	}
	if s.opts.Debounce > 0 {
		st.Debounce = s.opts.Debounce.String()
	}
	s.mu.RLock()
	st.Generation, st.LastUpdate = s.generation, s.lastUpdate
	for t, rs := range s.store {
		st.Resources[t] = len(rs)
	}
	s.mu.RUnlock()
	for _, p := range s.Proxies() {
		st.Connected++
		st.ByKind[string(p.Node.Kind)]++
		for _, ts := range s.proxyStatus(p).Types {
			st.States[ts.Status]++
		}
	}
	return st
}

// ConfigDump returns what proxy (a node ID, or a Conn for one stream)
// holds: the resources it ACKed. With several streams of one node ID the
// newest is shown.
func (s *Server) ConfigDump(proxy string) (*ConfigDump, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.proxies[proxy]
	if p == nil {
		for _, c := range s.proxies {
			if c.ID == proxy && (p == nil || c.ConnectedAt.After(p.ConnectedAt)) {
				p = c
			}
		}
	}
	if p == nil {
		return nil, fmt.Errorf("xds: no connected proxy %q", proxy)
	}
	d := &ConfigDump{Proxy: p.ID, Conn: p.Conn, Types: map[string]map[string]DumpedResource{}}
	p.mu.Lock()
	defer p.mu.Unlock()
	for t, ts := range p.types {
		rs := map[string]DumpedResource{}
		for n, r := range ts.acked {
			dr := DumpedResource{Version: r.version}
			msg := r.msg
			if msg == nil {
				if cur := s.store[t][n]; cur != nil && cur.version == r.version {
					msg = cur.msg
				}
			}
			if msg == nil {
				dr.Note = "content unknown: the proxy reported this version on reconnect and it is no longer stored"
			} else if b, err := protojson.Marshal(msg); err != nil {
				dr.Note = "protojson: " + err.Error()
			} else {
				dr.Resource = b
			}
			rs[n] = dr
		}
		d.Types[t] = rs
		for n, r := range ts.has {
			if a := ts.acked[n]; a == nil || a.version != r.version {
				if d.Unacked == nil {
					d.Unacked = map[string][]string{}
				}
				d.Unacked[t] = append(d.Unacked[t], n+"@"+r.version)
			}
		}
		slices.Sort(d.Unacked[t])
	}
	return d, nil
}

// Handler serves the debug endpoints warrenctl reads, for mounting on the
// 15014 monitoring port:
//
//	/debug/syncz[?proxy=<id>]                per stream: types, subscriptions, versions, ACK/NACK
//	/debug/config_dump?proxy=<id>[&type=<t>] the resources a proxy holds, as protojson
//	/debug/status                           overall counts
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/syncz", func(w http.ResponseWriter, r *http.Request) {
		all := s.Syncz()
		if id := r.URL.Query().Get("proxy"); id != "" {
			all = slices.DeleteFunc(all, func(p ProxyStatus) bool { return p.Proxy != id && p.Conn != id })
		}
		writeJSON(w, http.StatusOK, all)
	})
	mux.HandleFunc("GET /debug/config_dump", func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("proxy")
		if id == "" {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "xds: config_dump needs ?proxy=<node id>", "proxies": s.proxyIDs()})
			return
		}
		d, err := s.ConfigDump(id)
		if err != nil {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": err.Error(), "proxies": s.proxyIDs()})
			return
		}
		if t := r.URL.Query().Get("type"); t != "" {
			for k := range d.Types {
				if k != t && shortType(k) != t {
					delete(d.Types, k)
					delete(d.Unacked, k)
				}
			}
		}
		writeJSON(w, http.StatusOK, d)
	})
	mux.HandleFunc("GET /debug/status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Status())
	})
	return mux
}

func (s *Server) proxyIDs() []string {
	var ids []string
	for _, p := range s.Proxies() {
		ids = append(ids, p.Conn)
	}
	return ids
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func sortProxies(ps []*Proxy) {
	slices.SortFunc(ps, func(a, b *Proxy) int {
		if c := strings.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return a.ConnectedAt.Compare(b.ConnectedAt)
	})
}
