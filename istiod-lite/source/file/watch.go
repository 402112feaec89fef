package file

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/warren-mesh/warren/istiod-lite/model"
)

// Source watches a directory and keeps the last good snapshot.
type Source struct {
	dir      string
	debounce time.Duration

	mu      sync.RWMutex
	snap    *model.Snapshot
	lastErr error
	version uint64
	changed chan struct{}
}

// Options configure a Source.
type Options struct {
	// Dir holds the YAML files.
	Dir string
	// Debounce coalesces bursts of file events (editors write several).
	// Default 100ms.
	Debounce time.Duration
}

// New loads dir once; a bad initial load is an error (there is no last
// good state to keep).
func New(opts Options) (*Source, error) {
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	snap, err := LoadDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	return &Source{dir: opts.Dir, debounce: opts.Debounce, snap: snap, version: 1, changed: make(chan struct{})}, nil
}

// Name identifies the runner.
func (s *Source) Name() string { return "file-source " + s.dir }

// Snapshot returns the last good snapshot. Callers must not modify it.
func (s *Source) Snapshot() *model.Snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.snap
}

// Version counts successful loads.
func (s *Source) Version() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.version
}

// LastError is the problem of the latest load attempt, nil if it worked.
func (s *Source) LastError() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lastErr
}

// Changed is closed at the next successful reload.
func (s *Source) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// Reload reads the directory again. On error the last good snapshot stays.
func (s *Source) Reload() error {
	snap, err := LoadDir(s.dir)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastErr = err
	if err != nil {
		return err
	}
	s.snap = snap
	s.version++
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// Start watches the directory until ctx ends. onError hears every failed
// reload (the binary logs it); it may be nil.
func (s *Source) Start(ctx context.Context, onError func(error)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("file source: watch: %w", err)
	}
	defer w.Close()
	if err := w.Add(s.dir); err != nil {
		return fmt.Errorf("file source: watch %s: %w", s.dir, err)
	}
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("file source: watcher closed")
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(s.debounce)
			} else {
				timer.Reset(s.debounce)
			}
			fire = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("file source: watcher closed")
			}
			if onError != nil {
				onError(fmt.Errorf("file source: watch: %w", err))
			}
		case <-fire:
			fire = nil
			if err := s.Reload(); err != nil && onError != nil {
				onError(err)
			}
		}
	}
}
