package proxy

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/warren-mesh/warren/certs"
	caclient "github.com/warren-mesh/warren/istiod-lite/ca/client"
	"github.com/warren-mesh/warren/istiod-lite/xds/client"
	"github.com/warren-mesh/warren/waypoint"
	"github.com/warren-mesh/warren/waypoint/tunnel"
	"github.com/warren-mesh/warren/waypoint/upstream"
	"github.com/warren-mesh/warren/waypoint/xdsconfig"
	"github.com/warren-mesh/warren/ztunnel/hbone"
)

// Listener names for Addr.
const (
	ListenerHBONE     = "hbone"
	ListenerAdmin     = "admin"
	ListenerMetrics   = "metrics"
	ListenerReadiness = "readiness"
)

// Proxy is one waypoint process. New binds its listeners; Start serves
// until its context ends, then drains.
type Proxy struct {
	opts Options
	log  *slog.Logger
	reg  *prometheus.Registry

	bundle   *certs.TrustBundle
	identity *certs.IdentitySource
	store    *waypoint.Store
	engine   *waypoint.Engine
	handler  *xdsconfig.Handler
	inbound  *tunnel.Inbound
	pool     *hbone.Pool
	hbone    *hbone.Server
	xds      *client.Client   // nil in static mode
	ca       *caclient.Client // nil with a static identity

	lns   map[string]net.Listener
	addrs map[string]string

	started     atomic.Bool
	draining    atomic.Bool
	rootsReady  chan struct{}
	rootsMu     sync.Mutex
	rootsStatus string
}

// New validates o, builds the components and binds the listeners.
func New(o Options) (*Proxy, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("waypoint: options: %w", err)
	}
	p := &Proxy{opts: o, log: o.Logger, reg: o.Registry, lns: map[string]net.Listener{}, addrs: map[string]string{},
		rootsReady: make(chan struct{})}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.reg == nil {
		p.reg = prometheus.NewRegistry()
		p.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	p.bundle = certs.NewTrustBundle(o.Identity.TrustDomain())
	if o.RootCertFile != "" {
		p.rootsStatus = "waiting for the root certificate file " + o.RootCertFile
	}

	fetch := fileIdentity(o.CertFile, o.KeyFile)
	if o.CAAddress != "" {
		ca, err := caclient.New(caclient.Options{Address: o.CAAddress, Roots: p.bundle, ServerID: o.ControlPlaneID,
			Token: caclient.FileToken(o.TokenFile)})
		if err != nil {
			return nil, fmt.Errorf("waypoint: %w", err)
		}
		p.ca = ca
		fetch = ca.Fetcher(o.Identity, o.CertTTL)
	}
	id, err := certs.NewIdentitySource(certs.IdentityOptions{
		ID: o.Identity, Fetch: fetch,
		OnError: func(err error) {
			p.log.Warn("waypoint: identity fetch failed", "identity", o.Identity.String(), "error", err)
		},
		OnRotate: func(s *x509svid.SVID) {
			p.log.Info("waypoint: identity certificate installed", "identity", s.ID.String(),
				"expires", s.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
		},
	})
	if err != nil {
		p.closeClients()
		return nil, fmt.Errorf("waypoint: %w", err)
	}
	p.identity = id

	p.store = waypoint.NewStore(waypoint.StoreOptions{})
	p.pool = hbone.NewPool(hbone.PoolOptions{})
	dialer, err := tunnel.NewDialer(tunnel.DialerOptions{Pool: p.pool, Source: p.identity, Bundle: p.bundle, Port: o.UpstreamHBONEPort})
	if err != nil {
		p.closeClients()
		return nil, err
	}
	p.engine, err = waypoint.New(waypoint.Options{Store: p.store, Registerer: p.reg, AccessLog: o.AccessLog,
		Dialer: upstream.ByTunnel{HBONE: dialer, Plain: upstream.TCPDialer{}}})
	if err != nil {
		p.closeClients()
		return nil, err
	}
	if p.handler, err = xdsconfig.New(xdsconfig.Options{Store: p.store, Bundle: p.bundle}); err != nil {
		p.closeAll()
		return nil, err
	}
	if p.inbound, err = tunnel.NewInbound(tunnel.InboundOptions{Engine: p.engine, Store: p.store, Gateway: o.GatewayRef(),
		For: o.For, Ready: p.serving, Registerer: p.reg}); err != nil {
		p.closeAll()
		return nil, err
	}
	if p.hbone, err = hbone.NewServer(hbone.ServerOptions{
		TLSConfig: certs.HBONEServerConfig(p.identity, p.bundle, certs.AuthorizeAny(), certs.TLSOptions{}),
		Handler:   p.inbound,
	}); err != nil {
		p.closeAll()
		return nil, err
	}
	if o.XDSAddress != "" {
		co := client.Options{Address: o.XDSAddress, NodeID: o.NodeID().String(), Types: xdsconfig.Types,
			Handler: p.handler, Logger: p.log}
		if o.XDSPlaintext {
			co.Insecure = true
		} else {
			co.TLS = caclient.TLSConfig(o.XDSAddress, p.bundle, o.ControlPlaneID)
			co.Token = client.FileToken(o.TokenFile)
		}
		if p.xds, err = client.New(co); err != nil {
			p.closeAll()
			return nil, fmt.Errorf("waypoint: %w", err)
		}
	}
	if err := p.reg.Register(newCollector(p)); err != nil {
		p.closeAll()
		return nil, fmt.Errorf("waypoint: metrics: %w", err)
	}
	for _, l := range []struct{ name, addr string }{{ListenerHBONE, o.HBONEAddr}, {ListenerAdmin, o.AdminAddr},
		{ListenerMetrics, o.MetricsAddr}, {ListenerReadiness, o.ReadinessAddr}} {
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		ln, err := lc.Listen(context.Background(), "tcp", l.addr)
		if err != nil {
			p.closeAll()
			return nil, fmt.Errorf("waypoint: %s listener %s: %w", l.name, l.addr, err)
		}
		p.lns[l.name] = ln
		p.addrs[l.name] = ln.Addr().String()
	}
	return p, nil
}

// Name identifies the runner.
func (p *Proxy) Name() string { return "waypoint " + p.opts.GatewayRef() }

// Addr is the bound address of ListenerHBONE, ListenerAdmin,
// ListenerMetrics or ListenerReadiness.
func (p *Proxy) Addr(name string) string { return p.addrs[name] }

// Store is the configuration the proxy serves (read it; the proxy owns
// updates).
func (p *Proxy) Store() *waypoint.Store { return p.store }

// Ready returns nil when the waypoint should receive traffic: trust roots
// and a valid identity held, every configuration type accepted once, not
// draining. Otherwise the error says why.
func (p *Proxy) Ready() error {
	if p.draining.Load() {
		return errors.New("draining")
	}
	return p.serving()
}

// serving is Ready without the drain: whether CONNECTs can be served.
func (p *Proxy) serving() error {
	if len(p.bundle.Roots()) == 0 {
		p.rootsMu.Lock()
		st := p.rootsStatus
		p.rootsMu.Unlock()
		if st == "" {
			st = "no trust roots yet"
		}
		return errors.New(st)
	}
	if _, err := p.identity.GetX509SVID(); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if err := p.handler.Synced(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	return nil
}

// Start serves until ctx ends, then drains: readiness turns false, the
// HBONE server stops accepting (GOAWAY) and the engine lets requests in
// flight finish, both within DrainTimeout; then everything closes.
func (p *Proxy) Start(ctx context.Context) error {
	if !p.started.CompareAndSwap(false, true) {
		return errors.New("waypoint: already started")
	}
	bg, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	goRun := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	srvs := p.localServers()
	for name, srv := range srvs {
		ln := p.lns[name]
		goRun(func() { _ = srv.Serve(ln) })
	}
	hboneDone := make(chan error, 1)
	go func() { hboneDone <- p.hbone.Serve(p.lns[ListenerHBONE]) }()

	goRun(func() { p.seedRoots(bg) })
	goRun(func() {
		if p.ca != nil && !p.waitRoots(bg) {
			return
		}
		_ = p.identity.Run(bg)
	})
	goRun(func() { p.runConfig(bg) })
	goRun(func() { p.watchReadiness(bg) })
	p.log.Info("waypoint: started", "gateway", p.opts.GatewayRef(), "waypoint_for", p.opts.For, "identity", p.opts.Identity.String(),
		"hbone", p.Addr(ListenerHBONE), "admin", p.Addr(ListenerAdmin), "metrics", p.Addr(ListenerMetrics), "readiness", p.Addr(ListenerReadiness))

	var err error
	select {
	case <-ctx.Done():
	case err = <-hboneDone:
		err = fmt.Errorf("waypoint: hbone listener: %w", err)
		p.log.Error("waypoint: hbone listener failed", "error", err)
	}
	p.drain()
	stop()
	for _, srv := range srvs {
		_ = srv.Close()
	}
	_ = p.pool.Close()
	p.closeClients()
	wg.Wait()
	p.log.Info("waypoint: stopped")
	return err
}

// drain stops accepting and lets what is in flight finish.
func (p *Proxy) drain() {
	p.draining.Store(true)
	st := p.hbone.Stats()
	p.log.Info("waypoint: draining", "timeout", p.opts.DrainTimeout.String(), "connections", st.Connections, "streams", st.Streams)
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.DrainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	var herr, eerr error
	wg.Add(2)
	go func() { defer wg.Done(); herr = p.hbone.Shutdown(ctx) }()
	go func() { defer wg.Done(); eerr = p.engine.Shutdown(ctx) }()
	wg.Wait()
	if herr != nil || eerr != nil {
		p.log.Warn("waypoint: drain deadline reached, closed what was left", "hbone", errString(herr), "engine", errString(eerr))
		_ = p.hbone.Close()
		_ = p.engine.Close()
		return
	}
	p.log.Info("waypoint: drained")
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// runConfig feeds the Store: the xDS client (once the roots are there,
// for TLS), or the static file, retried until its first load succeeds.
func (p *Proxy) runConfig(ctx context.Context) {
	if p.xds != nil {
		if !p.opts.XDSPlaintext && !p.waitRoots(ctx) {
			return
		}
		_ = p.xds.Run(ctx)
		return
	}
	for {
		err := p.handler.WatchFile(ctx, p.opts.ConfigFile, xdsconfig.WatchOptions{
			OnLoad: func() {
				p.log.Info("waypoint: configuration loaded", "file", p.opts.ConfigFile, "version", p.store.Version())
			},
			OnError: func(err error) {
				p.log.Error("waypoint: configuration not reloaded, keeping the last good one", "error", err)
			},
		})
		if err == nil {
			return
		}
		p.log.Error("waypoint: configuration file", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.opts.RootCertPoll):
		}
	}
}

// seedRoots loads RootCertFile into the still-empty bundle, waiting for
// the file to appear (the ConfigMap volume is optional), then signals
// rootsReady. Without a RootCertFile the roots come from the config file.
func (p *Proxy) seedRoots(ctx context.Context) {
	defer close(p.rootsReady)
	if p.opts.RootCertFile == "" {
		return
	}
	logged := false
	for {
		roots, err := readRoots(p.opts.RootCertFile)
		if err == nil {
			if len(p.bundle.Roots()) == 0 {
				p.bundle.Set(roots)
			}
			p.log.Info("waypoint: trust roots loaded", "file", p.opts.RootCertFile, "roots", len(roots))
			return
		}
		p.rootsMu.Lock()
		p.rootsStatus = "waiting for the root certificate file: " + err.Error()
		p.rootsMu.Unlock()
		if !logged {
			p.log.Warn("waypoint: waiting for the root certificate file", "error", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.opts.RootCertPoll):
		}
	}
}

// waitRoots waits for seedRoots; false when ctx ended first.
func (p *Proxy) waitRoots(ctx context.Context) bool {
	select {
	case <-p.rootsReady:
		return ctx.Err() == nil
	case <-ctx.Done():
		return false
	}
}

func readRoots(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	roots, err := certs.ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return roots, nil
}

// watchReadiness logs readiness changes.
func (p *Proxy) watchReadiness(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	last := "unknown"
	for {
		cur := "ready"
		if err := p.Ready(); err != nil {
			cur = err.Error()
		}
		if cur != last {
			if cur == "ready" {
				p.log.Info("waypoint: ready")
			} else {
				p.log.Info("waypoint: not ready", "reason", cur)
			}
			last = cur
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// fileIdentity reads a static SVID (chain and key PEM) on every fetch.
func fileIdentity(certFile, keyFile string) certs.FetchFunc {
	return func(context.Context) (*x509svid.SVID, error) {
		chainPEM, err := os.ReadFile(certFile)
		if err != nil {
			return nil, err
		}
		chain, err := certs.ParseCertificates(chainPEM)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", certFile, err)
		}
		keyPEM, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, err
		}
		key, err := certs.ParseKey(keyPEM)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", keyFile, err)
		}
		return certs.SVIDFromChain(chain, key)
	}
}

func (p *Proxy) closeClients() {
	if p.ca != nil {
		_ = p.ca.Close()
	}
}

func (p *Proxy) closeAll() {
	for _, ln := range p.lns {
		_ = ln.Close()
	}
	if p.engine != nil {
		_ = p.engine.Close()
	}
	if p.pool != nil {
		_ = p.pool.Close()
	}
	p.closeClients()
}

// Close releases everything at once (no drain). Use it when Start was
// never called, or to abort.
func (p *Proxy) Close() error {
	if p.hbone != nil {
		_ = p.hbone.Close()
	}
	p.closeAll()
	return nil
}
