package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/warren-mesh/warren/istiod-lite/xds/client"
)

// resource is one stored resource, marshalled once and shared by every
// push. A resource known only by version (from initial_resource_versions)
// has a nil msg.
type resource struct {
	name    string
	version string
	msg     proto.Message
	any     *anypb.Any
}

// versionOnly is what a proxy claimed to hold on reconnect.
func versionOnly(name, version string) *resource { return &resource{name: name, version: version} }

var deterministic = proto.MarshalOptions{Deterministic: true}

// Version is the version istiod-lite gives m: a short hash (16 hex digits)
// of its deterministic encoding. Equal messages have equal versions.
func Version(m proto.Message) (string, error) {
	b, err := deterministic.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("xds: version of %s: %w", client.TypeURL(m), err)
	}
	return versionOf(b), nil
}

func versionOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

func newResource(typeURL, name string, m proto.Message) (*resource, error) {
	if name == "" {
		return nil, fmt.Errorf("xds: %s: empty resource name", typeURL)
	}
	if m == nil || !m.ProtoReflect().IsValid() {
		return nil, fmt.Errorf("xds: %s %q: nil message", typeURL, name)
	}
	if got := client.TypeURL(m); got != typeURL {
		return nil, fmt.Errorf("xds: %s %q: message is a %s", typeURL, name, got)
	}
	b, err := deterministic.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("xds: %s %q: %w", typeURL, name, err)
	}
	return &resource{name: name, version: versionOf(b), msg: m, any: &anypb.Any{TypeUrl: typeURL, Value: b}}, nil
}

// change is the set of names that changed per type in one batch.
type change map[string]map[string]struct{}

func (c change) add(typeURL, name string) {
	if c[typeURL] == nil {
		c[typeURL] = map[string]struct{}{}
	}
	c[typeURL][name] = struct{}{}
}

// Update upserts and removes resources of one type. Only resources whose
// version changed are pushed (after the debounce window), each to the
// proxies whose subscription and Scope include it. The messages must not
// be modified afterwards. Removing an unknown name is not an error.
func (s *Server) Update(typeURL string, upserts map[string]proto.Message, removes []string) error {
	prepared, err := prepare(typeURL, upserts, removes)
	if err != nil {
		return err
	}
	s.commit(map[string]*batch{typeURL: prepared}, false)
	return nil
}

// Set replaces every resource of typeURL with full: resources not in full
// are removed, and only those that differ from what is stored are pushed.
func (s *Server) Set(typeURL string, full map[string]proto.Message) error {
	prepared, err := prepare(typeURL, full, nil)
	if err != nil {
		return err
	}
	s.commit(map[string]*batch{typeURL: prepared}, true)
	return nil
}

// SetAll is Set for every type in r, committed and pushed as one batch.
// Types absent from r are left alone (give a type an empty map to clear it).
func (s *Server) SetAll(r Resources) error {
	batches := map[string]*batch{}
	for t, full := range r {
		b, err := prepare(t, full, nil)
		if err != nil {
			return err
		}
		batches[t] = b
	}
	s.commit(batches, true)
	return nil
}

type batch struct {
	upserts map[string]*resource
	removes []string
}

func prepare(typeURL string, upserts map[string]proto.Message, removes []string) (*batch, error) {
	if typeURL == "" {
		return nil, errors.New("xds: empty type URL")
	}
	b := &batch{upserts: make(map[string]*resource, len(upserts)), removes: removes}
	for name, m := range upserts {
		r, err := newResource(typeURL, name, m)
		if err != nil {
			return nil, err
		}
		b.upserts[name] = r
	}
	for _, name := range removes {
		if _, ok := b.upserts[name]; ok {
			return nil, fmt.Errorf("xds: %s %q is both upserted and removed", typeURL, name)
		}
	}
	return b, nil
}

// commit applies batches to the store (replacing whole types when full)
// and schedules pushes of what changed.
func (s *Server) commit(batches map[string]*batch, full bool) {
	now := time.Now()
	changed := change{}
	s.mu.Lock()
	for t, b := range batches {
		cur := s.store[t]
		if cur == nil {
			cur = map[string]*resource{}
			s.store[t] = cur
		}
		for name, r := range b.upserts {
			if old := cur[name]; old == nil || old.version != r.version {
				cur[name] = r
				changed.add(t, name)
			}
		}
		removes := b.removes
		if full {
			removes = removes[:0:0]
			for name := range cur {
				if _, keep := b.upserts[name]; !keep {
					removes = append(removes, name)
				}
			}
		}
		for _, name := range removes {
			if _, ok := cur[name]; ok {
				delete(cur, name)
				changed.add(t, name)
			}
		}
	}
	if len(changed) > 0 {
		s.generation++
		s.lastUpdate = now
	}
	s.mu.Unlock()
	if len(changed) == 0 {
		return
	}
	s.acks.broadcast() // a waited-for version may have been superseded
	s.schedule(changed, now)
}

// schedule coalesces changes for the debounce window, then flushes them.
func (s *Server) schedule(c change, since time.Time) {
	if s.opts.Debounce <= 0 {
		s.flush(c, since)
		return
	}
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if s.pending == nil {
		s.pending = change{}
		s.pendingSince = since
	}
	for t, names := range c {
		for n := range names {
			s.pending.add(t, n)
		}
	}
	if s.timer == nil && !s.stopped {
		s.timer = time.AfterFunc(s.opts.Debounce, s.fire)
	}
}

func (s *Server) fire() {
	s.dmu.Lock()
	c, since := s.pending, s.pendingSince
	s.pending, s.timer = nil, nil
	s.dmu.Unlock()
	if len(c) > 0 {
		s.flush(c, since)
	}
}

// flush marks the changed names dirty on every proxy subscribed to their
// type and wakes its sender.
func (s *Server) flush(c change, since time.Time) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, p := range s.proxies {
		p.markDirty(c, since)
	}
}

func (p *Proxy) markDirty(c change, since time.Time) {
	p.mu.Lock()
	woke := false
	for t, names := range c {
		if p.types[t] == nil {
			continue // not subscribed yet: its first request compares everything
		}
		d := p.dirty[t] // kept (cleared) between pushes: no map per flush
		if d == nil {
			d = make(map[string]struct{}, len(names))
			p.dirty[t] = d
		}
		maps.Copy(d, names)
		if old, ok := p.dirtySince[t]; !ok || since.Before(old) {
			p.dirtySince[t] = since
		}
		woke = true
	}
	p.mu.Unlock()
	if woke {
		p.wake()
	}
}

func (p *Proxy) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Rescope re-evaluates the Scope of every resource for the proxies match
// selects (nil: all) and pushes the differences at once: call it when
// something a Scope depends on changed without a resource changing (for
// example which Services a waypoint serves is decided elsewhere).
func (s *Server) Rescope(match func(*Proxy) bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, p := range s.proxies {
		if match != nil && !match(p) {
			continue
		}
		p.mu.Lock()
		for t := range p.types {
			p.dirtyAll[t] = true
		}
		p.mu.Unlock()
		p.wake()
	}
}

// Get returns the stored message and version of a resource.
func (s *Server) Get(typeURL, name string) (proto.Message, string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.store[typeURL][name]
	if r == nil {
		return nil, "", false
	}
	return r.msg, r.version, true
}

// Names lists the stored resource names of typeURL, sorted.
func (s *Server) Names(typeURL string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Sorted(maps.Keys(s.store[typeURL]))
}
