package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/istiod-lite/ca"
	"github.com/warren-mesh/warren/istiod-lite/controller"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/xds"
)

// runner is a component with a blocking Start.
type runner interface {
	Name() string
	Start(ctx context.Context) error
}

// plane is what the two modes (Kubernetes, file) set up differently.
type plane struct {
	source    controller.Source
	auth      ca.Authenticator
	pods      ca.PodLocator
	status    controller.StatusSink
	waypoints controller.WaypointSink
	onSnap    func(*model.Snapshot)
	runners   []runner
	// ready is waited for before the first translation (informer sync).
	ready func(ctx context.Context) error
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	td, err := spiffeid.TrustDomainFromString(o.trustDomain)
	if err != nil {
		return fmt.Errorf("-trust-domain: %w", err)
	}
	kubeMode := o.kubeconfig != "" || o.inCluster
	if kubeMode && (o.bootstrapTokens != "" || o.configDir != "") {
		return errors.New("-bootstrap-tokens and -config-dir are file-mode flags; Kubernetes mode (-kubeconfig/-in-cluster) authenticates with ServiceAccount tokens")
	}
	authority, err := certs.NewCA(certs.Options{
		TrustDomain: td, DataDir: o.caDataDir,
		RootCertFile: o.caRootCert, CertFile: o.caCert, KeyFile: o.caKey,
		DefaultTTL: o.caDefaultTTL, MaxTTL: o.caMaxTTL,
	})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mesh := model.MeshConfig{TrustDomain: td.Name(), ClusterDomain: o.clusterDomain, SystemNamespace: o.systemNamespace}

	var p *plane
	if kubeMode {
		p, err = kubePlane(ctx, o, td, mesh, authority, reg, log)
	} else {
		p, err = filePlane(o, td, log)
	}
	if err != nil {
		return err
	}

	debounce := o.xdsDebounce
	if debounce == 0 {
		debounce = xds.NoDebounce
	}
	xsrv, err := xds.NewServer(xds.Options{
		Authenticator: p.auth,
		NodeProxies:   splitList(o.impersonators),
		Debounce:      debounce,
		Registerer:    reg,
		Logger:        log,
	})
	if err != nil {
		return err
	}
	defer xsrv.Close()

	caSrv, err := ca.NewServer(ca.Options{CA: authority, Authenticator: p.auth, Pods: p.pods, Impersonators: splitList(o.impersonators), Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	serverID, err := certs.WorkloadID(td, o.systemNamespace, o.serviceAccount)
	if err != nil {
		return err
	}
	dns := splitList(o.dnsNames)
	if len(dns) == 0 {
		dns = []string{o.serviceAccount + "." + o.systemNamespace + ".svc", o.serviceAccount + "." + o.systemNamespace + ".svc." + o.clusterDomain}
	}
	svc, err := ca.NewService(authority, caSrv, ca.ServiceOptions{
		Addr: o.grpcAddr, ServerID: serverID, DNSNames: dns,
		Register:    []func(grpc.ServiceRegistrar){xsrv.Register},
		GRPCOptions: xds.ServerOptions(),
	})
	if err != nil {
		return err
	}
	pubs := publishers{xsrv}
	var extra []runner
	if o.xdsPlaintextAddr != "" {
		plain, err := xds.NewServer(xds.Options{AllowUnauthenticated: true, Debounce: debounce, ListenAddr: o.xdsPlaintextAddr, Logger: log})
		if err != nil {
			return err
		}
		defer plain.Close()
		pubs = append(pubs, plain)
		extra = append(extra, plain)
		log.Warn("istiod-lite: plaintext unauthenticated xDS enabled (tests only)", "addr", o.xdsPlaintextAddr)
	}
	ctrl, err := controller.New(controller.Options{
		Source: p.source, Mesh: mesh, Bundle: authority.Bundle(), XDS: pubs,
		Status: p.status, Waypoints: p.waypoints, OnSnapshot: p.onSnap, Logger: log,
	})
	if err != nil {
		return err
	}
	runners := append(append([]runner{svc, &startAfter{ready: p.ready, r: ctrl}}, p.runners...), extra...)
	if o.rootCertOut != "" {
		runners = append(runners, &bundleWriter{path: o.rootCertOut, bundle: authority.Bundle(), log: log})
	}
	if o.monitoringAddr != "" {
		runners = append(runners, &monitoring{addr: o.monitoringAddr, reg: reg, ca: authority, svc: svc, xds: xsrv, ctrl: ctrl})
	}
	go func() {
		select {
		case addr := <-svc.Listening():
			log.Info("istiod-lite: serving xDS and certificates", "addr", addr.String(), "identity", serverID.String(),
				"root_expires", authority.Signer().Root.NotAfter.UTC().Format(time.RFC3339), "roots", len(authority.Bundle().Roots()))
		case <-ctx.Done():
		}
		select {
		case <-ctrl.Synced():
			out, info := ctrl.Last()
			log.Info("istiod-lite: configuration published", "workloads", len(out.Workloads), "services", len(out.Services),
				"l7services", len(out.L7Services), "diagnostics", len(out.Diagnostics), "translate", info.Duration.String())
			for _, d := range out.Diagnostics {
				log.Warn("istiod-lite: "+d.Message, "kind", d.Kind, "object", model.Key(d.Namespace, d.Name))
			}
		case <-ctx.Done():
		}
	}()
	return runAll(ctx, log, runners)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// runAll starts every runner and returns when ctx ends or one fails.
func runAll(ctx context.Context, log *slog.Logger, rs []runner) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(rs))
	for _, r := range rs {
		go func() {
			err := r.Start(ctx)
			if err != nil {
				err = fmt.Errorf("%s: %w", r.Name(), err)
			} else if ctx.Err() == nil {
				err = fmt.Errorf("%s: stopped unexpectedly", r.Name())
			}
			errc <- err
		}()
	}
	var first error
	for range rs {
		err := <-errc
		if err != nil && ctx.Err() == nil && first == nil {
			first = err
		}
		cancel()
	}
	if first == nil {
		log.Info("istiod-lite: stopped")
	}
	return first
}

// startAfter delays a runner until ready (e.g. informer caches synced).
type startAfter struct {
	ready func(ctx context.Context) error
	r     runner
}

func (s *startAfter) Name() string { return s.r.Name() }

func (s *startAfter) Start(ctx context.Context) error {
	if s.ready != nil {
		if err := s.ready(ctx); err != nil {
			return err
		}
	}
	return s.r.Start(ctx)
}

// publishers fans one translation out to several xDS servers (the TLS
// server and the plaintext test server).
type publishers []controller.Publisher

func (ps publishers) SetAll(r xds.Resources) error {
	var errs []error
	for _, p := range ps {
		errs = append(errs, p.SetAll(r))
	}
	return errors.Join(errs...)
}
