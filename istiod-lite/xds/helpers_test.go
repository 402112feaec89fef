package xds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/ca"
	"github.com/warren-mesh/warren/istiod-lite/xds/client"
)

// timeout bounds every wait in these tests: long enough for 2 loaded
// cores, short enough to catch a hang.
const timeout = 10 * time.Second

// fakeAuth maps tokens to callers.
type fakeAuth map[string]*ca.Caller

func (f fakeAuth) Authenticate(_ context.Context, token string) (*ca.Caller, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: no bearer token", ca.ErrUnauthenticated)
	}
	c := f[token]
	if c == nil {
		return nil, fmt.Errorf("%w: unknown token", ca.ErrUnauthenticated)
	}
	return c, nil
}

func caller(ns, sa, node string) *ca.Caller {
	id := spiffeid.RequireFromPath(spiffeid.RequireTrustDomainFromString("cluster.local"), "/ns/"+ns+"/sa/"+sa)
	return &ca.Caller{Namespace: ns, ServiceAccount: sa, ID: id, Node: node}
}

// testServer runs s on a loopback listener until the test ends.
type testServer struct {
	*Server
	addr string
	stop context.CancelFunc
	done chan struct{}
}

func startServer(t testing.TB, opts Options) *testServer {
	t.Helper()
	if opts.Authenticator == nil {
		opts.AllowUnauthenticated = true
	}
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s}
	ts.serve(t, "127.0.0.1:0")
	t.Cleanup(func() { ts.down(); s.Close() })
	return ts
}

// serve (re)starts serving on addr.
func (ts *testServer) serve(t testing.TB, addr string) {
	t.Helper()
	var lis net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old socket of a restart may linger briefly
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	ts.stop, ts.done = cancel, make(chan struct{})
	go func() { defer close(ts.done); _ = ts.Serve(ctx, lis) }()
}

// down stops serving (every stream ends).
func (ts *testServer) down() {
	if ts.stop != nil {
		ts.stop()
		<-ts.done
		ts.stop = nil
	}
}

func workload(name string, ready bool) *warrenv1.Workload {
	return &warrenv1.Workload{
		Uid: "default/" + name, Name: name, Namespace: "default",
		Addresses: []string{"10.0.0.1"}, Node: "node-a", ServiceAccount: "default",
		Identity: "spiffe://cluster.local/ns/default/sa/default", Tunnel: warrenv1.TunnelProtocol_TUNNEL_HBONE,
		Ready: ready,
		Services: map[string]*warrenv1.PortList{
			"default/svc.default.svc.cluster.local": {Ports: []*warrenv1.PortMapping{{ServicePort: 80, TargetPort: 8080}}},
		},
	}
}

func workloads(names ...string) map[string]proto.Message {
	out := map[string]proto.Message{}
	for _, n := range names {
		out["default/"+n] = workload(n, true)
	}
	return out
}

func version(t testing.TB, m proto.Message) string {
	t.Helper()
	v, err := Version(m)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rawStream is a hand-driven delta-xDS stream.
type rawStream struct {
	t      testing.TB
	conn   *grpc.ClientConn
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	cancel context.CancelFunc
	resps  chan *discoveryv3.DeltaDiscoveryResponse
	errc   chan error
}

func dialRaw(t testing.TB, addr, token string) *rawStream {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := &rawStream{t: t, conn: conn, stream: st, cancel: cancel, resps: make(chan *discoveryv3.DeltaDiscoveryResponse, 100), errc: make(chan error, 1)}
	go func() {
		for {
			resp, err := st.Recv()
			if err != nil {
				r.errc <- err
				return
			}
			r.resps <- resp
		}
	}()
	t.Cleanup(r.close)
	return r
}

func (r *rawStream) close() {
	r.cancel()
	r.conn.Close()
}

func (r *rawStream) send(req *discoveryv3.DeltaDiscoveryRequest) {
	r.t.Helper()
	// io.EOF means the server ended the stream; Recv reports why.
	if err := r.stream.Send(req); err != nil && !errors.Is(err, io.EOF) {
		r.t.Fatalf("send: %v", err)
	}
}

// subscribe sends the first request of a type.
func (r *rawStream) subscribe(node, typeURL string, names []string, initial map[string]string) {
	r.t.Helper()
	req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResourceNamesSubscribe: names, InitialResourceVersions: initial}
	if node != "" {
		req.Node = &corev3.Node{Id: node}
	}
	r.send(req)
}

func (r *rawStream) recv() *discoveryv3.DeltaDiscoveryResponse {
	r.t.Helper()
	select {
	case resp := <-r.resps:
		return resp
	case err := <-r.errc:
		r.t.Fatalf("stream ended: %v", err)
	case <-time.After(timeout):
		r.t.Fatal("no response within", timeout)
	}
	return nil
}

// expectNone fails if a response arrives within d.
func (r *rawStream) expectNone(d time.Duration) {
	r.t.Helper()
	select {
	case resp := <-r.resps:
		r.t.Fatalf("unexpected response: %d resources %v, removed %v", len(resp.Resources), names(resp), resp.RemovedResources)
	case <-time.After(d):
	}
}

// streamErr waits for the stream to end and returns why.
func (r *rawStream) streamErr() error {
	r.t.Helper()
	select {
	case err := <-r.errc:
		return err
	case resp := <-r.resps:
		r.t.Fatalf("expected the stream to be refused, got a response of %d resources", len(resp.Resources))
	case <-time.After(timeout):
		r.t.Fatal("stream not ended within", timeout)
	}
	return nil
}

func (r *rawStream) ack(resp *discoveryv3.DeltaDiscoveryResponse) {
	r.t.Helper()
	r.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce})
}

func (r *rawStream) nack(resp *discoveryv3.DeltaDiscoveryResponse, msg string) {
	r.t.Helper()
	r.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce, ErrorDetail: &rpcstatus.Status{Code: 3, Message: msg}})
}

func names(resp *discoveryv3.DeltaDiscoveryResponse) []string {
	var out []string
	for _, r := range resp.Resources {
		out = append(out, r.Name)
	}
	slices.Sort(out)
	return out
}

func versions(resp *discoveryv3.DeltaDiscoveryResponse) map[string]string {
	out := map[string]string{}
	for _, r := range resp.Resources {
		out[r.Name] = r.Version
	}
	return out
}

// recorder is a client.Handler that keeps the state and every call.
type recorder struct {
	mu     sync.Mutex
	state  map[string]map[string]proto.Message
	calls  chan call
	reject func(typeURL string, upserts map[string]proto.Message) error
}

type call struct {
	typeURL string
	upserts map[string]proto.Message
	removes []string
	at      time.Time
}

func newRecorder() *recorder {
	return &recorder{state: map[string]map[string]proto.Message{}, calls: make(chan call, 10000)}
}

func (r *recorder) Apply(typeURL string, upserts map[string]proto.Message, removes []string) error {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reject != nil {
		if err := r.reject(typeURL, upserts); err != nil {
			return err
		}
	}
	m := r.state[typeURL]
	if m == nil {
		m = map[string]proto.Message{}
		r.state[typeURL] = m
	}
	for _, n := range removes {
		delete(m, n)
	}
	for n, v := range upserts {
		m[n] = v
	}
	r.calls <- call{typeURL, upserts, removes, now}
	return nil
}

func (r *recorder) names(typeURL string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for n := range r.state[typeURL] {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (r *recorder) get(typeURL, name string) proto.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state[typeURL][name]
}

// next returns the next Apply call.
func (r *recorder) next(t testing.TB) call {
	t.Helper()
	select {
	case c := <-r.calls:
		return c
	case <-time.After(timeout):
		t.Fatal("no configuration within", timeout)
	}
	return call{}
}

func (r *recorder) expectNone(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case c := <-r.calls:
		t.Fatalf("unexpected configuration: %s %d upserts, removes %v", c.typeURL, len(c.upserts), c.removes)
	case <-time.After(d):
	}
}

// runClient starts a client library instance until the test ends.
func runClient(t testing.TB, opts client.Options) *client.Client {
	t.Helper()
	if opts.TLS == nil {
		opts.Insecure = true
	}
	if opts.InitialBackoff == 0 {
		opts.InitialBackoff = 20 * time.Millisecond
		opts.MaxBackoff = 200 * time.Millisecond
	}
	c, err := client.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func clientOpts(addr, node string, h client.Handler, types ...string) client.Options {
	return client.Options{Address: addr, NodeID: node, Types: types, Handler: h}
}

func waitSynced(t testing.TB, c *client.Client) {
	t.Helper()
	select {
	case <-c.Synced():
	case <-time.After(timeout):
		t.Fatalf("client not synced within %s: %+v", timeout, c.State())
	}
}

// quiescent reports whether no proxy has a response outstanding, a
// rejected group to re-send, or a change waiting to be pushed.
func (s *Server) quiescent() bool {
	s.dmu.Lock()
	debouncing := len(s.pending) > 0
	s.dmu.Unlock()
	if debouncing {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, p := range s.proxies {
		p.mu.Lock()
		busy := len(p.dirtyAll) > 0
		for t, ts := range p.types {
			busy = busy || len(ts.pending) > 0 || len(ts.retry) > 0 || len(p.dirty[t]) > 0 || ts.mustRespond
		}
		p.mu.Unlock()
		if busy {
			return false
		}
	}
	return true
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
