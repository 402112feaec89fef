package xds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrSuperseded means the version waited for is no longer the stored one.
var ErrSuperseded = errors.New("superseded")

// WaitForAck returns once every connected proxy that subscribes to
// resource name of typeURL (and whose Scope includes it) has ACKed
// version ("" = the version stored when WaitForAck is called). Proxies
// that connect meanwhile are included; a proxy that disconnects is no
// longer waited for; a NACK keeps the wait going (the proxy may still
// accept a later push). It fails with ctx's error, naming the proxies
// still missing, or with ErrSuperseded when the resource changes or is
// removed while waiting. This is what the trust-bundle root switch uses:
// activate the new signing root only after every proxy trusts it.
func (s *Server) WaitForAck(ctx context.Context, typeURL, name, version string) error {
	if version == "" {
		_, v, ok := s.Get(typeURL, name)
		if !ok {
			return fmt.Errorf("xds: wait for ACK of %s %q: no such resource", shortType(typeURL), name)
		}
		version = v
	}
	for {
		wake := s.acks.wait()
		waiting, err := s.missingAcks(typeURL, name, version)
		if err != nil {
			return err
		}
		if len(waiting) == 0 {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("xds: wait for every proxy to ACK %s %q version %s: %w; still waiting for %d: %s",
				shortType(typeURL), name, version, ctx.Err(), len(waiting), strings.Join(waiting, ", "))
		}
	}
}

// missingAcks lists the proxies that should hold version and have not
// ACKed it.
func (s *Server) missingAcks(typeURL, name, version string) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := s.store[typeURL][name]
	if r == nil {
		return nil, fmt.Errorf("xds: wait for ACK of %s %q version %s: resource removed: %w", shortType(typeURL), name, version, ErrSuperseded)
	}
	if r.version != version {
		return nil, fmt.Errorf("xds: wait for ACK of %s %q version %s: now at version %s: %w", shortType(typeURL), name, version, r.version, ErrSuperseded)
	}
	var waiting []string
	for _, p := range s.proxies {
		p.mu.Lock()
		ts := p.types[typeURL]
		if ts != nil && ts.subscribes(name) && s.opts.Scope(p, typeURL, name, r.msg) {
			if a := ts.acked[name]; a == nil || a.version != version {
				waiting = append(waiting, describeWait(p, ts, name))
			}
		}
		p.mu.Unlock()
	}
	slices.Sort(waiting)
	return waiting, nil
}
