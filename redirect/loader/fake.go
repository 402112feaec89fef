package loader

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
)

// Fake is an in-memory Dataplane for unit tests of the agent: it needs no
// root, records what capture would be, and can be told to fail.
type Fake struct {
	mu           sync.Mutex
	netns        map[string]uint64 // path → cookie
	pods         map[uint64]PodConfig
	listeners    map[uint64]int // cookie → listeners installed
	skipCgroups  []uint64
	probeSources []netip.Addr
	fail         map[uint64]error
	ops          []string
	closed       bool
}

var _ Dataplane = (*Fake)(nil)

// NewFake returns an empty Fake.
func NewFake() *Fake {
	return &Fake{
		netns:     map[string]uint64{},
		pods:      map[uint64]PodConfig{},
		listeners: map[uint64]int{},
		fail:      map[uint64]error{},
	}
}

// AddNetns makes OpenNetns(path) succeed with cookie.
func (f *Fake) AddNetns(path string, cookie uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.netns[path] = cookie
}

// RemoveNetns makes OpenNetns(path) fail as for a vanished pod.
func (f *Fake) RemoveNetns(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.netns, path)
}

// FailEnrol makes Enrol of cookie fail with err (nil clears it).
func (f *Fake) FailEnrol(cookie uint64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, cookie)
	} else {
		f.fail[cookie] = err
	}
}

// Preload marks cookie as enrolled, as pins left by a previous agent would.
func (f *Fake) Preload(cookie uint64, cfg PodConfig) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pods[cookie] = cfg.Normalize()
	f.listeners[cookie] = 1
}

// Ops returns the operations performed so far ("enrol 7", "release 7").
func (f *Fake) Ops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ops)
}

// Listeners returns how many inbound listeners cookie has installed.
func (f *Fake) Listeners(cookie uint64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listeners[cookie]
}

// SkipCgroups returns the current skip set.
func (f *Fake) SkipCgroups() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.skipCgroups)
}

// ProbeSources returns the current probe sources.
func (f *Fake) ProbeSources() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.probeSources)
}

// OpenNetns implements Dataplane; the handle is /dev/null.
func (f *Fake) OpenNetns(path string) (Netns, error) {
	f.mu.Lock()
	c, ok := f.netns[path]
	f.mu.Unlock()
	if !ok {
		return Netns{}, fmt.Errorf("loader: netns: open %s: %w", path, os.ErrNotExist)
	}
	file, err := os.Open(os.DevNull)
	if err != nil {
		return Netns{}, err
	}
	return Netns{File: file, Cookie: c}, nil
}

// Enrolled implements Dataplane.
func (f *Fake) Enrolled() (map[uint64]PodConfig, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[uint64]PodConfig, len(f.pods))
	for c, cfg := range f.pods {
		out[c] = cfg
	}
	return out, nil
}

// Enrol implements Dataplane.
func (f *Fake) Enrol(ns Netns, cfg PodConfig, inbound []*os.File) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[ns.Cookie]; err != nil {
		return err
	}
	f.ops = append(f.ops, fmt.Sprintf("enrol %d", ns.Cookie))
	f.pods[ns.Cookie] = cfg.Normalize()
	if inbound != nil {
		f.listeners[ns.Cookie] = len(inbound)
	}
	return nil
}

// Release implements Dataplane.
func (f *Fake) Release(cookie uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.pods[cookie]; ok {
		f.ops = append(f.ops, fmt.Sprintf("release %d", cookie))
	}
	delete(f.pods, cookie)
	delete(f.listeners, cookie)
	return nil
}

// SetSkipCgroups implements Dataplane.
func (f *Fake) SetSkipCgroups(ids []uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.skipCgroups = slices.Sorted(slices.Values(ids))
	return nil
}

// SetProbeSources implements Dataplane.
func (f *Fake) SetProbeSources(addrs []netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probeSources = slices.Clone(addrs)
	return nil
}

// OriginalDst implements Dataplane: the Fake has no map.
func (f *Fake) OriginalDst() (*os.File, error) { return nil, nil }

// Stats implements Dataplane.
func (f *Fake) Stats() (map[string]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return map[string]uint64{"pods": uint64(len(f.pods))}, nil
}

// Close implements Dataplane.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}
