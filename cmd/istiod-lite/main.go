// Command istiod-lite is Warren's control plane. Today it runs the
// certificate service (gRPC CreateCertificate on :15012 over TLS) with its
// metrics and debug page on :15014, against Kubernetes (TokenReview, pod
// informer, root ConfigMaps) or, without a cluster, against bootstrap
// tokens and Pod YAML in a config directory.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/istiod-lite/ca"
)

type options struct {
	trustDomain     string
	caDataDir       string
	caRootCert      string
	caCert          string
	caKey           string
	caDefaultTTL    time.Duration
	caMaxTTL        time.Duration
	grpcAddr        string
	monitoringAddr  string
	kubeconfig      string
	inCluster       bool
	configDir       string
	bootstrapTokens string
	impersonators   string
	systemNamespace string
	serviceAccount  string
	dnsNames        string
	rootCertOut     string
	logFormat       string
}

func main() {
	var o options
	flag.StringVar(&o.trustDomain, "trust-domain", certs.DefaultTrustDomain, "SPIFFE trust domain")
	flag.StringVar(&o.caDataDir, "ca-data-dir", "", "directory holding the self-signed root (created on first start, 0700/0600)")
	flag.StringVar(&o.caRootCert, "ca-root-cert", "", "plugged-in CA: root certificate(s) PEM")
	flag.StringVar(&o.caCert, "ca-cert", "", "plugged-in CA: signing (intermediate) certificate chain PEM")
	flag.StringVar(&o.caKey, "ca-key", "", "plugged-in CA: signing key PEM")
	flag.DurationVar(&o.caDefaultTTL, "ca-default-ttl", certs.DefaultSVIDTTL, "SVID lifetime when a request names none")
	flag.DurationVar(&o.caMaxTTL, "ca-max-ttl", certs.DefaultMaxTTL, "longest SVID lifetime granted")
	flag.StringVar(&o.grpcAddr, "grpc-addr", ":15012", "certificate service (gRPC over TLS) listen address")
	flag.StringVar(&o.monitoringAddr, "monitoring-addr", ":15014", "metrics (/metrics) and debug (/debug/ca) listen address; empty disables")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig for Kubernetes mode")
	flag.BoolVar(&o.inCluster, "in-cluster", false, "Kubernetes mode with the pod's in-cluster config")
	flag.StringVar(&o.configDir, "config-dir", "", "file mode: directory of YAML (Pods with nodeName are used for node-scoped impersonation)")
	flag.StringVar(&o.bootstrapTokens, "bootstrap-tokens", "", "file mode: bootstrap token file (YAML: tokens: [{token, serviceAccount, node}])")
	flag.StringVar(&o.impersonators, "impersonators", "warren-system/ztunnel", "comma-separated <ns>/<sa> of node proxies allowed node-scoped impersonation")
	flag.StringVar(&o.systemNamespace, "system-namespace", "warren-system", "namespace istiod-lite runs in")
	flag.StringVar(&o.serviceAccount, "service-account", "istiod-lite", "service account istiod-lite runs as (its SPIFFE ID on :15012)")
	flag.StringVar(&o.dnsNames, "dns-names", "", "comma-separated extra DNS names for the serving certificate (default istiod-lite.<ns>.svc)")
	flag.StringVar(&o.rootCertOut, "root-cert-out", "", "write the trust bundle PEM here (kept current), for clients outside Kubernetes")
	flag.StringVar(&o.logFormat, "log-format", "text", "text or json")
	flag.Parse()

	log := newLogger(o.logFormat)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		log.Error("istiod-lite: exiting", "error", err)
		os.Exit(1)
	}
}

func newLogger(format string) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	td, err := spiffeid.TrustDomainFromString(o.trustDomain)
	if err != nil {
		return fmt.Errorf("-trust-domain: %w", err)
	}
	kubeMode := o.kubeconfig != "" || o.inCluster
	if kubeMode == (o.bootstrapTokens != "") {
		return errors.New("choose one mode: Kubernetes (-kubeconfig or -in-cluster) or file (-bootstrap-tokens, optional -config-dir)")
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
	srvOpts := ca.Options{CA: authority, Registerer: reg, Logger: log, Impersonators: splitList(o.impersonators)}

	var runners []runner
	if kubeMode {
		cfg, err := kubeConfig(o)
		if err != nil {
			return err
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return fmt.Errorf("kubernetes client: %w", err)
		}
		factory := informers.NewSharedInformerFactory(cs, 0)
		pods, err := ca.NewKubePodLocator(factory)
		if err != nil {
			return err
		}
		factory.Start(ctx.Done())
		log.Info("istiod-lite: waiting for the pod cache")
		if !cache.WaitForCacheSync(ctx.Done(), pods.HasSynced) {
			return errors.New("pod cache did not sync")
		}
		srvOpts.Authenticator = &ca.TokenReviewAuthenticator{Client: cs, TrustDomain: td}
		srvOpts.Pods = pods
		runners = append(runners, &ca.RootPublisher{Client: cs, Bundle: authority.Bundle(), SystemNamespace: o.systemNamespace, Logger: log})
	} else {
		auth, err := ca.LoadBootstrapTokens(o.bootstrapTokens, td)
		if err != nil {
			return err
		}
		srvOpts.Authenticator = auth
		locator := ca.NewStaticPodLocator()
		if o.configDir != "" {
			pods, err := ca.LoadPodsFromDir(o.configDir)
			if err != nil {
				return err
			}
			locator.Set(pods)
			log.Info("istiod-lite: file mode", "config_dir", o.configDir, "pods", len(pods))
		}
		srvOpts.Pods = locator
	}
	srv, err := ca.NewServer(srvOpts)
	if err != nil {
		return err
	}
	serverID, err := certs.WorkloadID(td, o.systemNamespace, o.serviceAccount)
	if err != nil {
		return err
	}
	dns := splitList(o.dnsNames)
	if len(dns) == 0 {
		dns = []string{o.serviceAccount + "." + o.systemNamespace + ".svc", o.serviceAccount + "." + o.systemNamespace + ".svc.cluster.local"}
	}
	svc, err := ca.NewService(authority, srv, ca.ServiceOptions{Addr: o.grpcAddr, ServerID: serverID, DNSNames: dns})
	if err != nil {
		return err
	}
	runners = append(runners, svc)
	if o.rootCertOut != "" {
		runners = append(runners, &bundleWriter{path: o.rootCertOut, bundle: authority.Bundle(), log: log})
	}
	if o.monitoringAddr != "" {
		runners = append(runners, &monitoring{addr: o.monitoringAddr, reg: reg, ca: authority, svc: svc})
	}
	go func() {
		select {
		case addr := <-svc.Listening():
			log.Info("istiod-lite: certificate service ready", "addr", addr.String(), "identity", serverID.String(),
				"root_expires", authority.Signer().Root.NotAfter.UTC().Format(time.RFC3339), "roots", len(authority.Bundle().Roots()))
		case <-ctx.Done():
		}
	}()
	return runAll(ctx, log, runners)
}

func kubeConfig(o options) (*rest.Config, error) {
	if o.inCluster {
		return rest.InClusterConfig()
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("-kubeconfig %s: %w", o.kubeconfig, err)
	}
	return cfg, nil
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

// runner is a component with a blocking Start.
type runner interface {
	Name() string
	Start(ctx context.Context) error
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
		if err != nil && ctx.Err() == nil {
			first = err
		}
		cancel()
	}
	if first == nil {
		log.Info("istiod-lite: stopped")
	}
	return first
}

// bundleWriter keeps a PEM file of the trust bundle current.
type bundleWriter struct {
	path   string
	bundle *certs.TrustBundle
	log    *slog.Logger
}

func (w *bundleWriter) Name() string { return "bundle-writer" }

func (w *bundleWriter) Start(ctx context.Context) error {
	for {
		changed := w.bundle.Changed()
		tmp := w.path + ".tmp"
		if err := os.WriteFile(tmp, w.bundle.PEM(), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, w.path); err != nil {
			return err
		}
		w.log.Info("istiod-lite: wrote trust bundle", "path", w.path, "roots", len(w.bundle.Roots()))
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// monitoring serves /metrics and /debug/ca.
type monitoring struct {
	addr string
	reg  *prometheus.Registry
	ca   *certs.CA
	svc  *ca.Service
}

func (m *monitoring) Name() string { return "monitoring" }

func (m *monitoring) Start(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/ca", func(w http.ResponseWriter, _ *http.Request) {
		type cert struct {
			Subject  string `json:"subject"`
			Serial   string `json:"serial"`
			NotAfter string `json:"notAfter"`
		}
		desc := func(a *certs.Authority) map[string]any {
			if a == nil {
				return nil
			}
			return map[string]any{"signer": a.Cert.Subject.String(), "root": a.Root.Subject.String(), "notAfter": a.NotAfter().UTC().Format(time.RFC3339)}
		}
		var roots []cert
		for _, r := range m.ca.Bundle().Roots() {
			roots = append(roots, cert{Subject: r.Subject.String(), Serial: r.SerialNumber.Text(16), NotAfter: r.NotAfter.UTC().Format(time.RFC3339)})
		}
		st := m.svc.Serving().Status()
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{
			"trustDomain": m.ca.TrustDomain().Name(),
			"signer":      desc(m.ca.Signer()),
			"pending":     desc(m.ca.Pending()),
			"roots":       roots,
			"serving":     map[string]any{"id": st.ID.String(), "serial": st.Serial, "notAfter": st.NotAfter.UTC().Format(time.RFC3339), "state": st.State},
		})
	})
	lis, err := net.Listen("tcp", m.addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); hs.Close() }()
	if err := hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
