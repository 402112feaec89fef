package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	// The warren.v1 types register themselves, so their Any payloads unpack.
	_ "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

// Handler receives configuration changes, one call per response, for one
// type at a time. Calls are serialized. Removes may name resources the
// handler never had (an explicitly subscribed name that does not exist);
// treat those as no-ops. An error rejects the whole response: the client
// NACKs it with the error's text and keeps its previous state for that type,
// so the handler must leave its own state unchanged too.
type Handler interface {
	Apply(typeURL string, upserts map[string]proto.Message, removes []string) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(typeURL string, upserts map[string]proto.Message, removes []string) error

// Apply implements Handler.
func (f HandlerFunc) Apply(typeURL string, upserts map[string]proto.Message, removes []string) error {
	return f(typeURL, upserts, removes)
}

// TokenSource returns the bearer token for the next stream.
type TokenSource func() (string, error)

// StaticToken always returns token.
func StaticToken(token string) TokenSource {
	return func() (string, error) { return token, nil }
}

// FileToken reads the token from path for every stream, so rotated
// projected tokens are picked up.
func FileToken(path string) TokenSource {
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("xds client: token: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("xds client: token file %s is empty", path)
		}
		return t, nil
	}
}

// Defaults for Options.
const (
	DefaultInitialBackoff  = 200 * time.Millisecond
	DefaultMaxBackoff      = 30 * time.Second
	DefaultMaxMessageBytes = 64 << 20
)

// Options configure a Client.
type Options struct {
	// Address of istiod-lite, host:port (15012 with TLS; 15010 plaintext
	// in tests). Required.
	Address string
	// NodeID is this proxy's node ID in its wire form (see NodeID).
	// Required.
	NodeID string
	// Types are subscribed with wildcard (every resource of the type the
	// control plane scopes to this proxy), in this order.
	Types []string
	// Names subscribes explicitly to the named resources of a type instead
	// of wildcard (a type may appear here or in Types, not both).
	Names map[string][]string
	// TLS secures the connection (see istiod-lite/ca/client.TLSConfig for
	// the usual configuration). Required unless Insecure is set or
	// DialOptions carry transport credentials.
	TLS *tls.Config
	// Insecure dials in plaintext (the 15010 test port). Never in production.
	Insecure bool
	// DialOptions are appended to the client's own.
	DialOptions []grpc.DialOption
	// Token authenticates each stream ("authorization: Bearer"); nil sends
	// none.
	Token TokenSource
	// Handler receives the configuration. Required.
	Handler Handler
	// InitialBackoff and MaxBackoff bound the reconnect delay, which
	// doubles after each failed attempt (with jitter) and resets once a
	// stream got a response. Defaults 200ms and 30s.
	InitialBackoff, MaxBackoff time.Duration
	// MaxMessageBytes bounds one response. Default 64 MiB.
	MaxMessageBytes int
	// Logger hears reconnects and NACKs. Default: discard.
	Logger *slog.Logger
}

// Client is a delta-xDS client: it keeps one ADS stream to istiod-lite,
// feeds responses to the Handler, ACKs or NACKs them, and reconnects with
// backoff. While the control plane is unreachable nothing is removed: the
// data plane keeps its last good configuration, and on reconnect the
// client sends the versions it holds so only the differences come back.
type Client struct {
	opts Options
	node *corev3.Node
	dial []grpc.DialOption

	// applyMu serializes Handler calls and the versions they commit.
	applyMu sync.Mutex
	// sendMu serializes writes on the current stream.
	sendMu sync.Mutex

	mu       sync.Mutex
	order    []string
	subs     map[string]*subscription
	stream   discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	st       State
	synced   chan struct{}
	isSynced bool
}

type subscription struct {
	wildcard bool
	names    map[string]bool
	versions map[string]string
	stats    TypeState
	// responded is set once the first response for the type arrived.
	responded bool
}

// State is a snapshot of the client for admin endpoints.
type State struct {
	Address string `json:"address"`
	NodeID  string `json:"nodeId"`
	// Connected is true while a stream is up and answered.
	Connected      bool      `json:"connected"`
	ConnectedSince time.Time `json:"connectedSince,omitzero"`
	// LastUpdate is when the handler last accepted a response.
	LastUpdate time.Time `json:"lastUpdate,omitzero"`
	// LastError is why the last stream ended or could not start.
	LastError string `json:"lastError,omitempty"`
	// Connects counts streams that got at least one response.
	Connects int                  `json:"connects"`
	Types    map[string]TypeState `json:"types"`
}

// TypeState is the client's view of one subscribed type.
type TypeState struct {
	Wildcard bool     `json:"wildcard"`
	Names    []string `json:"names,omitempty"`
	// Versions maps each resource held to its version.
	Versions     map[string]string `json:"versions"`
	LastNonce    string            `json:"lastNonce,omitempty"`
	LastUpdate   time.Time         `json:"lastUpdate,omitzero"`
	ACKs         int               `json:"acks"`
	NACKs        int               `json:"nacks"`
	LastNACK     string            `json:"lastNack,omitempty"`
	LastNACKTime time.Time         `json:"lastNackTime,omitzero"`
}

// New validates opts. Run connects.
func New(opts Options) (*Client, error) {
	if opts.Address == "" {
		return nil, errors.New("xds client: an address is required")
	}
	if _, err := ParseNodeID(opts.NodeID); err != nil {
		return nil, fmt.Errorf("xds client: %w", err)
	}
	if opts.Handler == nil {
		return nil, errors.New("xds client: a handler is required")
	}
	if len(opts.Types) == 0 && len(opts.Names) == 0 {
		return nil, errors.New("xds client: subscribe to at least one type (Types or Names)")
	}
	if opts.TLS == nil && !opts.Insecure && len(opts.DialOptions) == 0 {
		return nil, errors.New("xds client: TLS is required (or Insecure for the plaintext test port)")
	}
	if opts.InitialBackoff <= 0 {
		opts.InitialBackoff = DefaultInitialBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MaxBackoff < opts.InitialBackoff {
		opts.MaxBackoff = opts.InitialBackoff
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		opts:   opts,
		node:   &corev3.Node{Id: opts.NodeID, UserAgentName: "warren"},
		subs:   map[string]*subscription{},
		synced: make(chan struct{}),
		st:     State{Address: opts.Address, NodeID: opts.NodeID},
	}
	for _, t := range opts.Types {
		if t == "" || c.subs[t] != nil {
			return nil, fmt.Errorf("xds client: type %q is empty or listed twice", t)
		}
		c.order = append(c.order, t)
		c.subs[t] = &subscription{wildcard: true, names: map[string]bool{}, versions: map[string]string{}}
	}
	explicit := make([]string, 0, len(opts.Names))
	for t := range opts.Names {
		explicit = append(explicit, t)
	}
	slices.Sort(explicit)
	for _, t := range explicit {
		if t == "" || c.subs[t] != nil {
			return nil, fmt.Errorf("xds client: type %q is empty or listed in both Types and Names", t)
		}
		s := &subscription{names: map[string]bool{}, versions: map[string]string{}}
		for _, n := range opts.Names[t] {
			s.names[n] = true
		}
		c.order = append(c.order, t)
		c.subs[t] = s
	}
	switch {
	case opts.TLS != nil:
		c.dial = append(c.dial, grpc.WithTransportCredentials(credentials.NewTLS(opts.TLS)))
	case opts.Insecure:
		c.dial = append(c.dial, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	c.dial = append(c.dial,
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(opts.MaxMessageBytes)),
		// Static flow-control windows, large enough for an initial sync
		// at full speed; they also turn off gRPC's BDP probing, which
		// would add a PING round trip to every small push.
		grpc.WithInitialWindowSize(4<<20),
		grpc.WithInitialConnWindowSize(4<<20),
	)
	c.dial = append(c.dial, opts.DialOptions...)
	return c, nil
}

// Name identifies the runner.
func (c *Client) Name() string { return "xds-client" }

// Start runs the client (see Run).
func (c *Client) Start(ctx context.Context) error { return c.Run(ctx) }

// Synced is closed once every type subscribed at construction got its
// first response (readiness).
func (c *Client) Synced() <-chan struct{} { return c.synced }

// Run keeps a stream to the control plane until ctx ends, reconnecting
// with exponential backoff and jitter. It returns nil when ctx ends.
func (c *Client) Run(ctx context.Context) error {
	attempt := 0
	for {
		answered, err := c.session(ctx)
		c.mu.Lock()
		c.stream = nil
		c.st.Connected = false
		if err != nil && ctx.Err() == nil {
			c.st.LastError = err.Error()
		}
		c.mu.Unlock()
		if ctx.Err() != nil {
			return nil
		}
		if answered {
			attempt = 0
		}
		d := c.backoff(attempt)
		attempt++
		c.opts.Logger.Warn("xds client: stream ended, reconnecting", "address", c.opts.Address, "error", err, "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// backoff is min(max, initial·2^attempt), jittered to [50%, 100%].
func (c *Client) backoff(attempt int) time.Duration {
	d := c.opts.InitialBackoff
	for i := 0; i < attempt && d < c.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.opts.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// session runs one stream; answered reports whether it got a response.
func (c *Client) session(ctx context.Context) (answered bool, err error) {
	conn, err := grpc.NewClient(c.opts.Address, c.dial...)
	if err != nil {
		return false, fmt.Errorf("xds client: dial %s: %w", c.opts.Address, err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.opts.Token != nil {
		tok, err := c.opts.Token()
		if err != nil {
			return false, err
		}
		sctx = metadata.AppendToOutgoingContext(sctx, "authorization", "Bearer "+tok)
	}
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err != nil {
		return false, fmt.Errorf("xds client: open stream to %s: %w", c.opts.Address, err)
	}
	// Hold sendMu while announcing the stream and sending the initial
	// requests, so a concurrent Subscribe cannot overtake them.
	c.sendMu.Lock()
	c.mu.Lock()
	reqs := make([]*discoveryv3.DeltaDiscoveryRequest, 0, len(c.order))
	for _, t := range c.order {
		s := c.subs[t]
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, InitialResourceVersions: map[string]string{}}
		if s.wildcard && len(s.names) > 0 {
			req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, "*")
		}
		for n := range s.names {
			req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
		}
		slices.Sort(req.ResourceNamesSubscribe)
		if !s.wildcard && len(s.names) == 0 {
			continue // nothing to ask for
		}
		for n, v := range s.versions {
			req.InitialResourceVersions[n] = v
		}
		reqs = append(reqs, req)
	}
	c.stream = stream
	c.mu.Unlock()
	for i, req := range reqs {
		if i == 0 {
			req.Node = c.node
		}
		if err := stream.Send(req); err != nil {
			c.sendMu.Unlock()
			return false, c.streamErr(stream, err)
		}
	}
	if len(reqs) == 0 {
		// Still identify ourselves so the server authenticates the stream.
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: c.node}); err != nil {
			c.sendMu.Unlock()
			return false, c.streamErr(stream, err)
		}
	}
	c.sendMu.Unlock()
	for {
		resp, err := stream.Recv()
		if err != nil {
			return answered, fmt.Errorf("xds client: stream from %s: %w", c.opts.Address, err)
		}
		if !answered {
			answered = true
			c.mu.Lock()
			c.st.Connected = true
			c.st.ConnectedSince = time.Now()
			c.st.LastError = ""
			c.st.Connects++
			c.mu.Unlock()
		}
		if err := c.handle(stream, resp); err != nil {
			return answered, err
		}
	}
}

// streamErr turns a Send error into the stream's real status.
func (c *Client) streamErr(stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, err error) error {
	if _, rerr := stream.Recv(); rerr != nil {
		err = rerr
	}
	return fmt.Errorf("xds client: stream to %s: %w", c.opts.Address, err)
}

// handle applies one response and answers it.
func (c *Client) handle(stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, resp *discoveryv3.DeltaDiscoveryResponse) error {
	t := resp.GetTypeUrl()
	c.applyMu.Lock()
	err := c.apply(resp)
	c.applyMu.Unlock()
	now := time.Now()
	ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce()}
	c.mu.Lock()
	if s := c.subs[t]; s != nil {
		s.stats.LastNonce = resp.GetNonce()
		if err != nil {
			s.stats.NACKs++
			s.stats.LastNACK = err.Error()
			s.stats.LastNACKTime = now
		} else {
			s.stats.ACKs++
			s.stats.LastUpdate = now
			c.st.LastUpdate = now
		}
		if !s.responded {
			s.responded = true
			c.checkSyncedLocked()
		}
	}
	c.mu.Unlock()
	if err != nil {
		ack.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		c.opts.Logger.Warn("xds client: rejected configuration", "type", t, "nonce", resp.GetNonce(), "error", err)
	}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if err := stream.Send(ack); err != nil {
		return c.streamErr(stream, err)
	}
	return nil
}

// apply unpacks resp and hands it to the handler; on success it commits
// the new versions. Called with applyMu held.
func (c *Client) apply(resp *discoveryv3.DeltaDiscoveryResponse) error {
	t := resp.GetTypeUrl()
	c.mu.Lock()
	s := c.subs[t]
	c.mu.Unlock()
	if s == nil {
		return fmt.Errorf("xds client: got type %s, which this client did not subscribe to", t)
	}
	upserts := make(map[string]proto.Message, len(resp.GetResources()))
	versions := make(map[string]string, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		any := r.GetResource()
		switch {
		case r.GetName() == "":
			return fmt.Errorf("xds client: %s: resource without a name", t)
		case any == nil:
			return fmt.Errorf("xds client: %s %q: resource without a body", t, r.GetName())
		case any.GetTypeUrl() != t:
			return fmt.Errorf("xds client: %s %q: body is a %s", t, r.GetName(), any.GetTypeUrl())
		}
		m, err := anypb.UnmarshalNew(any, proto.UnmarshalOptions{})
		if err != nil {
			return fmt.Errorf("xds client: %s %q: %w", t, r.GetName(), err)
		}
		upserts[r.GetName()] = m
		versions[r.GetName()] = r.GetVersion()
	}
	removes := resp.GetRemovedResources()
	if err := c.opts.Handler.Apply(t, upserts, removes); err != nil {
		return err
	}
	c.mu.Lock()
	for _, n := range removes {
		delete(s.versions, n)
	}
	for n, v := range versions {
		s.versions[n] = v
	}
	c.mu.Unlock()
	return nil
}

func (c *Client) checkSyncedLocked() {
	if c.isSynced {
		return
	}
	for _, t := range c.order {
		if s := c.subs[t]; s != nil && (s.wildcard || len(s.names) > 0) && !s.responded {
			return
		}
	}
	c.isSynced = true
	close(c.synced)
}

// Subscribe adds names of typeURL to the subscription, or with no names
// subscribes to the whole type (wildcard). It takes effect on the live
// stream at once and survives reconnects.
func (c *Client) Subscribe(typeURL string, names ...string) error {
	if typeURL == "" {
		return errors.New("xds client: subscribe: empty type URL")
	}
	c.mu.Lock()
	s := c.subs[typeURL]
	if s == nil {
		s = &subscription{names: map[string]bool{}, versions: map[string]string{}, responded: true}
		c.subs[typeURL] = s
		c.order = append(c.order, typeURL)
	}
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL}
	if len(names) == 0 {
		if !s.wildcard {
			s.wildcard = true
			req.ResourceNamesSubscribe = []string{"*"}
		}
	}
	for _, n := range names {
		if !s.names[n] {
			s.names[n] = true
			req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
		}
	}
	stream := c.stream
	c.mu.Unlock()
	if len(req.ResourceNamesSubscribe) == 0 || stream == nil {
		return nil
	}
	return c.send(stream, req)
}

// Unsubscribe drops names of typeURL from the subscription (with no names:
// the wildcard). Resources no longer subscribed are removed through the
// Handler, as the xDS protocol has the client forget them itself.
func (c *Client) Unsubscribe(typeURL string, names ...string) error {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	c.mu.Lock()
	s := c.subs[typeURL]
	if s == nil {
		c.mu.Unlock()
		return nil
	}
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL}
	if len(names) == 0 && s.wildcard {
		s.wildcard = false
		req.ResourceNamesUnsubscribe = []string{"*"}
	}
	for _, n := range names {
		if s.names[n] {
			delete(s.names, n)
			req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
		}
	}
	var drop []string
	for n := range s.versions {
		if !s.wildcard && !s.names[n] {
			drop = append(drop, n)
		}
	}
	slices.Sort(drop)
	stream := c.stream
	c.mu.Unlock()
	if len(req.ResourceNamesUnsubscribe) == 0 {
		return nil
	}
	if len(drop) > 0 {
		if err := c.opts.Handler.Apply(typeURL, map[string]proto.Message{}, drop); err != nil {
			return fmt.Errorf("xds client: unsubscribe %s: handler: %w", typeURL, err)
		}
		c.mu.Lock()
		for _, n := range drop {
			delete(s.versions, n)
		}
		c.mu.Unlock()
	}
	if stream == nil {
		return nil
	}
	return c.send(stream, req)
}

func (c *Client) send(stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, req *discoveryv3.DeltaDiscoveryRequest) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	// A failed Send means the stream is ending: Run reconnects and
	// re-announces the whole subscription, so it is not the caller's error.
	_ = stream.Send(req)
	return nil
}

// State returns a copy of the client's state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	st.Types = make(map[string]TypeState, len(c.subs))
	for t, s := range c.subs {
		ts := s.stats
		ts.Wildcard = s.wildcard
		for n := range s.names {
			ts.Names = append(ts.Names, n)
		}
		slices.Sort(ts.Names)
		ts.Versions = make(map[string]string, len(s.versions))
		for n, v := range s.versions {
			ts.Versions[n] = v
		}
		st.Types[t] = ts
	}
	return st
}

// Versions returns the versions held for typeURL (name → version).
func (c *Client) Versions(typeURL string) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	if s := c.subs[typeURL]; s != nil {
		for n, v := range s.versions {
			out[n] = v
		}
	}
	return out
}
