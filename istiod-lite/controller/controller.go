package controller

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/translate"
	"github.com/warren-mesh/warren/istiod-lite/xds"
)

// Source yields snapshots. Changed may return a fresh channel each call
// (closed at the next change) or one long-lived channel that receives a
// value per change; the loop calls it every round and handles both.
type Source interface {
	Snapshot() *model.Snapshot
	Changed() <-chan struct{}
}

// StatusSink receives the desired status of every object.
type StatusSink interface {
	Enqueue(snap *model.Snapshot, st translate.Status)
}

// WaypointSink receives the waypoints to run.
type WaypointSink interface {
	Update(snap *model.Snapshot, ws []translate.Waypoint)
}

// Publisher stores proxy configuration (the xDS server).
type Publisher interface {
	SetAll(r xds.Resources) error
}

// Options configure a Controller.
type Options struct {
	Source Source
	// Mesh settings stamped on every snapshot.
	Mesh model.MeshConfig
	// Bundle is the CA's trust bundle, published to every proxy.
	Bundle *certs.TrustBundle
	// XDS receives the proxy configuration. Required.
	XDS Publisher
	// Status and Waypoints are optional (Kubernetes mode).
	Status    StatusSink
	Waypoints WaypointSink
	// OnSnapshot, if set, sees every snapshot before translation (the file
	// mode CA uses it to learn where pods run).
	OnSnapshot func(*model.Snapshot)
	// Debounce waits this long after a change for more (default 10ms).
	Debounce time.Duration
	Logger   *slog.Logger
}

// Controller is the translation loop.
type Controller struct {
	opts Options
	inc  translate.Incremental

	mu       sync.RWMutex
	last     *translate.Output
	lastSnap *model.Snapshot
	lastAt   time.Time
	lastDur  time.Duration
	lastKind translate.Scope
	rounds   int
	synced   chan struct{}
}

// New validates opts.
func New(opts Options) (*Controller, error) {
	if opts.Source == nil || opts.XDS == nil {
		return nil, errors.New("controller: a source and an xDS publisher are required")
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 10 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Mesh = opts.Mesh.Defaults()
	return &Controller{opts: opts, synced: make(chan struct{})}, nil
}

// Name identifies the runner.
func (c *Controller) Name() string { return "controller" }

// Synced is closed after the first translation was published.
func (c *Controller) Synced() <-chan struct{} { return c.synced }

// Start runs the loop until ctx ends.
func (c *Controller) Start(ctx context.Context) error {
	var bundleCh <-chan struct{}
	for {
		if c.opts.Bundle != nil {
			bundleCh = c.opts.Bundle.Changed()
		}
		if err := c.round(); err != nil {
			c.opts.Logger.Error("controller: publishing configuration", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.opts.Source.Changed():
		case <-bundleCh:
		}
		// Coalesce a burst of changes.
		t := time.NewTimer(c.opts.Debounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// round translates the current snapshot and publishes the result.
func (c *Controller) round() error {
	start := time.Now()
	src := c.opts.Source.Snapshot()
	if src == nil {
		return errors.New("controller: source has no snapshot yet")
	}
	// A copy: sources may hand out the same snapshot again.
	cp := *src
	snap := &cp
	snap.Config = c.opts.Mesh
	snap.TrustBundlePEM = nil
	if c.opts.Bundle != nil {
		for _, r := range c.opts.Bundle.Roots() {
			snap.TrustBundlePEM = append(snap.TrustBundlePEM, string(certs.EncodeCertificates([]*x509.Certificate{r})))
		}
	}
	if c.opts.OnSnapshot != nil {
		c.opts.OnSnapshot(snap)
	}
	c.mu.RLock()
	prev := c.lastSnap
	c.mu.RUnlock()
	out, scope := c.inc.Translate(snap, Changes(prev, snap))
	err := c.opts.XDS.SetAll(Resources(out))
	if c.opts.Status != nil {
		c.opts.Status.Enqueue(snap, out.Status)
	}
	if c.opts.Waypoints != nil {
		c.opts.Waypoints.Update(snap, out.Waypoints)
	}
	c.mu.Lock()
	c.last, c.lastSnap, c.lastAt, c.lastDur, c.lastKind = out, snap, time.Now(), time.Since(start), scope
	c.rounds++
	first := c.rounds == 1
	c.mu.Unlock()
	if first && err == nil {
		close(c.synced)
	}
	c.opts.Logger.Debug("controller: translated", "scope", string(scope), "duration", time.Since(start).String(),
		"workloads", len(out.Workloads), "services", len(out.Services), "l7services", len(out.L7Services), "diagnostics", len(out.Diagnostics))
	return err
}

// Last returns the latest output and when it was computed.
func (c *Controller) Last() (*translate.Output, RoundInfo) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.last, RoundInfo{At: c.lastAt, Duration: c.lastDur, Scope: c.lastKind, Rounds: c.rounds}
}

// RoundInfo describes the latest translation.
type RoundInfo struct {
	At       time.Time
	Duration time.Duration
	Scope    translate.Scope
	Rounds   int
}

// Resources converts a translation output into the xDS store's shape.
func Resources(out *translate.Output) xds.Resources {
	r := xds.Resources{
		xds.TypeWorkload:      make(map[string]proto.Message, len(out.Workloads)),
		xds.TypeService:       make(map[string]proto.Message, len(out.Services)),
		xds.TypeAuthorization: make(map[string]proto.Message, len(out.Authorizations)),
		xds.TypeL7Service:     make(map[string]proto.Message, len(out.L7Services)),
		xds.TypeTrustBundle:   {},
	}
	for k, v := range out.Workloads {
		r[xds.TypeWorkload][k] = v
	}
	for k, v := range out.Services {
		r[xds.TypeService][k] = v
	}
	for k, v := range out.Authorizations {
		r[xds.TypeAuthorization][k] = v
	}
	for k, v := range out.L7Services {
		r[xds.TypeL7Service][k] = v
	}
	if out.TrustBundle != nil {
		r[xds.TypeTrustBundle][xds.TrustBundleName] = out.TrustBundle
	}
	return r
}

// Changes lists what changed between two snapshots when only pods and
// routes did (objects are compared by identity: informer caches and the
// file source replace an object when it changes). It returns nil — a full
// translation — when anything else changed or there is no previous
// snapshot.
func Changes(prev, cur *model.Snapshot) []translate.Change {
	if prev == nil {
		return nil
	}
	if !sameSet(prev.Namespaces, cur.Namespaces) || !sameSet(prev.Services, cur.Services) ||
		!sameSet(prev.EndpointSlices, cur.EndpointSlices) || !sameSet(prev.Nodes, cur.Nodes) ||
		!sameSet(prev.GatewayClasses, cur.GatewayClasses) || !sameSet(prev.Gateways, cur.Gateways) ||
		!sameSet(prev.ReferenceGrants, cur.ReferenceGrants) || !sameSet(prev.BackendTrafficPolicies, cur.BackendTrafficPolicies) ||
		!sameSet(prev.AuthorizationPolicies, cur.AuthorizationPolicies) || !sameSet(prev.WaypointDeployments, cur.WaypointDeployments) ||
		!sameStrings(prev.TrustBundlePEM, cur.TrustBundlePEM) || prev.Config != cur.Config {
		return nil
	}
	var out []translate.Change
	out = append(out, diffSet("Pod", prev.Pods, cur.Pods)...)
	out = append(out, diffSet("HTTPRoute", prev.HTTPRoutes, cur.HTTPRoutes)...)
	out = append(out, diffSet("GRPCRoute", prev.GRPCRoutes, cur.GRPCRoutes)...)
	if len(out) == 0 {
		return nil // nothing we can name changed: translate fully
	}
	return out
}

type object interface {
	comparable
	GetNamespace() string
	GetName() string
}

func index[T object](list []T) map[string]T {
	m := make(map[string]T, len(list))
	for _, o := range list {
		m[o.GetNamespace()+"/"+o.GetName()] = o
	}
	return m
}

func sameSet[T object](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	ia := index(a)
	for _, o := range b {
		if ia[o.GetNamespace()+"/"+o.GetName()] != o {
			return false
		}
	}
	return true
}

func diffSet[T object](kind string, a, b []T) []translate.Change {
	ia, ib := index(a), index(b)
	var out []translate.Change
	for k, o := range ib {
		if ia[k] != o {
			out = append(out, translate.Change{Kind: kind, Namespace: o.GetNamespace(), Name: o.GetName()})
		}
	}
	for k, o := range ia {
		if _, ok := ib[k]; !ok {
			out = append(out, translate.Change{Kind: kind, Namespace: o.GetNamespace(), Name: o.GetName()})
		}
	}
	return out
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
