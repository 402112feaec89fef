package nodeproto

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
)

// Fake stands in for Server in unit tests of the agent: it records the
// pods handed over and answers with no listeners (or fails on demand).
type Fake struct {
	mu        sync.Mutex
	connected bool
	pods      map[string]Pod
	failAdd   map[string]error
	ops       []string
}

// NewFake returns a connected Fake.
func NewFake() *Fake {
	return &Fake{connected: true, pods: map[string]Pod{}, failAdd: map[string]error{}}
}

// SetConnected makes requests fail with ErrNotConnected (false) or work.
func (f *Fake) SetConnected(c bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.connected = c
}

// FailAdd makes AddPod of uid fail with err (nil clears).
func (f *Fake) FailAdd(uid string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.failAdd, uid)
	} else {
		f.failAdd[uid] = err
	}
}

// Pods returns the uids handed over, sorted.
func (f *Fake) Pods() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for uid := range f.pods {
		out = append(out, uid)
	}
	slices.Sort(out)
	return out
}

// Pod returns what was handed over for uid.
func (f *Fake) Pod(uid string) (Pod, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pods[uid]
	return p, ok
}

// Ops returns the requests so far ("add uid", "remove uid").
func (f *Fake) Ops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ops)
}

// AddPod records pod; it returns no listeners.
func (f *Fake) AddPod(ctx context.Context, pod Pod, netns *os.File) ([]*os.File, error) {
	if err := pod.Validate(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.connected {
		return nil, ErrNotConnected
	}
	if err := f.failAdd[pod.UID]; err != nil {
		return nil, fmt.Errorf("nodeproto: ztunnel: %w", err)
	}
	if netns == nil {
		return nil, fmt.Errorf("nodeproto: add pod %s: no netns", pod.UID)
	}
	f.ops = append(f.ops, "add "+pod.UID)
	f.pods[pod.UID] = pod
	return []*os.File{}, nil
}

// RemovePod forgets uid.
func (f *Fake) RemovePod(ctx context.Context, uid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.connected {
		return ErrNotConnected
	}
	f.ops = append(f.ops, "remove "+uid)
	delete(f.pods, uid)
	return nil
}
