// Command istiod-lite is Warren's control plane: it watches Kubernetes (or
// a directory of YAML, the embedded examples by default), translates
// Gateway API and GAMMA objects into per-proxy configuration served over
// delta xDS, issues workload certificates, writes status back and deploys
// waypoints. Ports: 15012 xDS + CA over TLS, 15014 metrics and debug,
// 15010 plaintext xDS (tests only, off by default).
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/warren-mesh/warren/certs"
)

type options struct {
	trustDomain      string
	clusterDomain    string
	caDataDir        string
	caRootCert       string
	caCert           string
	caKey            string
	caDefaultTTL     time.Duration
	caMaxTTL         time.Duration
	grpcAddr         string
	monitoringAddr   string
	xdsPlaintextAddr string
	xdsDebounce      time.Duration
	kubeconfig       string
	inCluster        bool
	configDir        string
	bootstrapTokens  string
	impersonators    string
	systemNamespace  string
	serviceAccount   string
	dnsNames         string
	rootCertOut      string
	waypointImage    string
	logFormat        string
	logLevel         string
}

func main() {
	var o options
	flag.StringVar(&o.trustDomain, "trust-domain", certs.DefaultTrustDomain, "SPIFFE trust domain")
	flag.StringVar(&o.clusterDomain, "cluster-domain", "cluster.local", "DNS domain of Service hostnames")
	flag.StringVar(&o.caDataDir, "ca-data-dir", "", "directory holding the self-signed root (created on first start, 0700/0600)")
	flag.StringVar(&o.caRootCert, "ca-root-cert", "", "plugged-in CA: root certificate(s) PEM")
	flag.StringVar(&o.caCert, "ca-cert", "", "plugged-in CA: signing (intermediate) certificate chain PEM")
	flag.StringVar(&o.caKey, "ca-key", "", "plugged-in CA: signing key PEM")
	flag.DurationVar(&o.caDefaultTTL, "ca-default-ttl", certs.DefaultSVIDTTL, "SVID lifetime when a request names none")
	flag.DurationVar(&o.caMaxTTL, "ca-max-ttl", certs.DefaultMaxTTL, "longest SVID lifetime granted")
	flag.StringVar(&o.grpcAddr, "grpc-addr", ":15012", "xDS and certificate service (gRPC over TLS) listen address")
	flag.StringVar(&o.monitoringAddr, "monitoring-addr", ":15014", "metrics (/metrics) and debug (/debug/...) listen address; empty disables")
	flag.StringVar(&o.xdsPlaintextAddr, "xds-plaintext-addr", "", "plaintext, unauthenticated xDS (port 15010) for tests; never in production")
	flag.DurationVar(&o.xdsDebounce, "xds-debounce", 20*time.Millisecond, "coalesce configuration changes for this long before pushing (0 pushes at once)")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig for Kubernetes mode")
	flag.BoolVar(&o.inCluster, "in-cluster", false, "Kubernetes mode with the pod's in-cluster config")
	flag.StringVar(&o.configDir, "config-dir", "", "file mode: directory of YAML to serve and watch (default: the embedded examples)")
	flag.StringVar(&o.bootstrapTokens, "bootstrap-tokens", "", "file mode: bootstrap token file (YAML: tokens: [{token, serviceAccount, node}]) authenticating proxies on 15012")
	flag.StringVar(&o.impersonators, "impersonators", "warren-system/ztunnel", "comma-separated <ns>/<sa> of node proxies allowed node-scoped impersonation")
	flag.StringVar(&o.systemNamespace, "system-namespace", "warren-system", "namespace istiod-lite runs in")
	flag.StringVar(&o.serviceAccount, "service-account", "istiod-lite", "service account istiod-lite runs as (its SPIFFE ID on :15012)")
	flag.StringVar(&o.dnsNames, "dns-names", "", "comma-separated extra DNS names for the serving certificate (default istiod-lite.<ns>.svc)")
	flag.StringVar(&o.rootCertOut, "root-cert-out", "", "write the trust bundle PEM here (kept current), for clients outside Kubernetes")
	flag.StringVar(&o.waypointImage, "waypoint-image", "warren/waypoint:dev", "image of the waypoint Deployments (Kubernetes mode)")
	flag.StringVar(&o.logFormat, "log-format", "text", "text or json")
	flag.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	flag.Parse()

	log := newLogger(o.logFormat, o.logLevel)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		log.Error("istiod-lite: exiting", "error", err)
		os.Exit(1)
	}
}

func newLogger(format, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	ho := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, ho))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, ho))
}
