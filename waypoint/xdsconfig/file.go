package xdsconfig

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/xds/client"
	"github.com/warren-mesh/warren/waypoint"
)

// Resources is a whole configuration: type URL → resource name → message.
type Resources map[string]map[string]proto.Message

// fileSections maps the top-level keys of `warrenctl x translate` output
// to type URLs; ignoredSections are printed by it but are no proxy's.
var (
	fileSections = map[string]string{
		"workloads": client.TypeWorkload, "services": client.TypeService, "authorizations": client.TypeAuthorization,
		"l7services": client.TypeL7Service, "trustBundle": client.TypeTrustBundle,
	}
	ignoredSections = map[string]bool{"status": true, "waypoints": true, "diagnostics": true}
)

// ParseFile reads a configuration in the shape `warrenctl x translate`
// prints (with or without --proxy): top-level sections workloads,
// services, authorizations, l7services and trustBundle, each mapping a
// resource name to the resource in protobuf JSON; status, waypoints and
// diagnostics are ignored. Unknown sections and fields are errors.
func ParseFile(data []byte) (Resources, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("waypoint: config file: %w", err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("waypoint: config file: want a mapping of sections: %w", err)
	}
	out := Resources{}
	for _, t := range Types {
		out[t] = map[string]proto.Message{}
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, sec := range keys {
		typeURL, ok := fileSections[sec]
		if !ok {
			if ignoredSections[sec] {
				continue
			}
			return nil, fmt.Errorf("waypoint: config file: unknown section %q (want workloads, services, authorizations, l7services, trustBundle)", sec)
		}
		var byName map[string]json.RawMessage
		if raw := doc[sec]; !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			if err := json.Unmarshal(raw, &byName); err != nil {
				return nil, fmt.Errorf("waypoint: config file: %s: want a mapping of name to resource: %w", sec, err)
			}
		}
		for name, raw := range byName {
			m := newMessage(typeURL)
			if err := protojson.Unmarshal(raw, m); err != nil {
				return nil, fmt.Errorf("waypoint: config file: %s %q: %w", sec, name, err)
			}
			out[typeURL][name] = m
		}
	}
	return out, nil
}

// LoadFile reads and parses path.
func LoadFile(path string) (Resources, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("waypoint: config file: %w", err)
	}
	r, err := ParseFile(data)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return r, nil
}

func newMessage(typeURL string) proto.Message {
	switch typeURL {
	case client.TypeWorkload:
		return &warrenv1.Workload{}
	case client.TypeService:
		return &warrenv1.Service{}
	case client.TypeAuthorization:
		return &warrenv1.Authorization{}
	case client.TypeL7Service:
		return &warrenv1.L7Service{}
	}
	return &warrenv1.TrustBundle{}
}

// ReplaceAll makes r the whole configuration (static mode). A TrustBundle
// in r replaces the bundle's roots; without one the roots stay (the root
// certificate file's). On error nothing changes.
func (h *Handler) ReplaceAll(r Resources) error {
	var err error
	defer func() {
		for _, t := range Types {
			h.record(t, err)
		}
	}()
	var roots []*x509.Certificate
	if tb := r[client.TypeTrustBundle]; len(tb) > 0 {
		if roots, err = h.bundleRoots(tb); err != nil {
			return err
		}
	}
	cfg := waypoint.Config{L7Services: map[string]*warrenv1.L7Service{}, Services: map[string]*warrenv1.Service{},
		Workloads: map[string]*warrenv1.Workload{}, Authorizations: map[string]*warrenv1.Authorization{}}
	for _, t := range []string{client.TypeL7Service, client.TypeService, client.TypeWorkload, client.TypeAuthorization} {
		if err = checkTypes(t, r[t]); err != nil {
			return err
		}
	}
	merge(cfg.L7Services, r[client.TypeL7Service], nil)
	merge(cfg.Services, r[client.TypeService], nil)
	merge(cfg.Workloads, r[client.TypeWorkload], nil)
	merge(cfg.Authorizations, r[client.TypeAuthorization], nil)
	if err = h.opts.Store.Replace(cfg); err != nil {
		err = fmt.Errorf("waypoint: config file: %w", err)
		return err
	}
	if roots != nil {
		h.opts.Bundle.Set(roots)
	}
	return nil
}

// WatchOptions configure WatchFile.
type WatchOptions struct {
	// Interval between checks of the file; default 1s.
	Interval time.Duration
	// OnLoad hears every successful (re)load; OnError every failed one
	// (the last good configuration stays).
	OnLoad  func()
	OnError func(error)
}

// WatchFile loads path into h, then reloads it whenever its content
// changes, until ctx ends. The first load's error is returned at once;
// later ones go to OnError and keep the last good configuration.
// Polling (not inotify) also sees ConfigMap volume updates, which swap a
// symlink.
func (h *Handler) WatchFile(ctx context.Context, path string, o WatchOptions) error {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	last, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("waypoint: config file: %w", err)
	}
	if err := h.load(path, last); err != nil {
		return err
	}
	if o.OnLoad != nil {
		o.OnLoad()
	}
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		data, err := os.ReadFile(path)
		if err == nil && bytes.Equal(data, last) {
			continue
		}
		if err == nil {
			last = data
			err = h.load(path, data)
		} else {
			err = fmt.Errorf("waypoint: config file: %w", err)
		}
		switch {
		case err != nil && o.OnError != nil:
			o.OnError(err)
		case err == nil && o.OnLoad != nil:
			o.OnLoad()
		}
	}
}

func (h *Handler) load(path string, data []byte) error {
	r, err := ParseFile(data)
	if err != nil {
		err = fmt.Errorf("%w (%s)", err, path)
		for _, t := range Types {
			h.record(t, err)
		}
		return err
	}
	return h.ReplaceAll(r)
}
