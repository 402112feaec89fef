package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/waypoint/proxy"
)

// config is the parsed command line.
type config struct {
	opts      proxy.Options
	logFormat string
	logLevel  slog.Level
	accessLog string
}

// parseFlags maps the command line (as istiod-lite's waypoint deployer
// renders it, plus the static and test flags) to proxy.Options, checking
// everything proxy.Options.Validate checks.
func parseFlags(args []string, getenv func(string) string, out io.Writer) (*config, error) {
	fs := flag.NewFlagSet("waypoint", flag.ContinueOnError)
	fs.SetOutput(out)
	var (
		c                                                 config
		identity, controlPlaneID, trustDomain             string
		listenAddr, adminAddr                             string
		hbonePort, readinessPort, metricsPort, adminPort  uint
		upstreamHBONEPort                                 uint
		logLevel                                          string
		certTTL, drainTimeout                             time.Duration
		xdsAddr, caAddr, tokenFile, rootCertFile, podName string
	)
	o := &c.opts
	fs.StringVar(&o.GatewayName, "gateway-name", "", "name of the waypoint Gateway this process serves (required)")
	fs.StringVar(&o.GatewayNamespace, "gateway-namespace", "", "namespace of the waypoint Gateway (required)")
	fs.StringVar(&o.For, "waypoint-for", "service", "traffic served: service, workload, all or none (the Gateway's warren.io/waypoint-for)")
	fs.StringVar(&identity, "identity", "", "the waypoint's SPIFFE ID (default spiffe://<trust-domain>/ns/<gateway-namespace>/sa/<gateway-name>)")
	fs.StringVar(&trustDomain, "trust-domain", certs.DefaultTrustDomain, "trust domain for the default --identity")
	fs.StringVar(&podName, "pod-name", "", "pod name for the xDS node ID (default $POD_NAME, else the host name)")
	fs.StringVar(&xdsAddr, "xds-address", "", "istiod-lite's xDS address, host:port (15012, TLS); exclusive with --config-file")
	fs.BoolVar(&o.XDSPlaintext, "xds-plaintext", false, "dial --xds-address without TLS or token (istiod-lite's -xds-plaintext-addr; tests only)")
	fs.StringVar(&caAddr, "ca-address", "", "istiod-lite's certificate service, host:port (default --xds-address unless --cert-file is set)")
	fs.StringVar(&tokenFile, "token-file", "", "bearer token for the CA and xDS (the deployer mounts /var/run/secrets/tokens/warren-ca-token)")
	fs.StringVar(&rootCertFile, "root-cert-file", "", "roots that verify istiod-lite and seed the trust bundle (the deployer mounts /var/run/secrets/warren/root-cert.pem); waited for when missing")
	fs.StringVar(&controlPlaneID, "control-plane-id", "", "SPIFFE ID istiod-lite must present (default spiffe://<td>/ns/warren-system/sa/istiod-lite)")
	fs.DurationVar(&certTTL, "cert-ttl", 0, "certificate lifetime to ask the CA for (0: the CA's default)")
	fs.StringVar(&o.ConfigFile, "config-file", "", "static mode: YAML of warren.v1 resources as 'warrenctl x translate' prints them (reloaded on change)")
	fs.StringVar(&o.CertFile, "cert-file", "", "static identity: certificate chain PEM (re-read at half-life)")
	fs.StringVar(&o.KeyFile, "key-file", "", "static identity: private key PEM")
	fs.StringVar(&listenAddr, "listen-address", "", "address the HBONE, metrics and readiness ports bind (default all)")
	fs.UintVar(&hbonePort, "hbone-port", 15008, "HBONE port (0: ephemeral, tests)")
	fs.UintVar(&readinessPort, "readiness-port", 15021, "readiness port, GET /healthz/ready (0: ephemeral)")
	fs.UintVar(&metricsPort, "metrics-port", 15020, "Prometheus port, GET /metrics (0: ephemeral)")
	fs.StringVar(&adminAddr, "admin-address", "127.0.0.1", "address of the admin port (keep it local)")
	fs.UintVar(&adminPort, "admin-port", 15000, "admin port: /config_dump, /debug/connections, /logging (0: ephemeral)")
	fs.UintVar(&upstreamHBONEPort, "upstream-hbone-port", 15008, "HBONE port of the endpoints' ztunnels (tests only)")
	fs.DurationVar(&drainTimeout, "drain-timeout", proxy.DefaultDrainTimeout, "on SIGTERM, how long requests in flight may finish")
	fs.StringVar(&c.accessLog, "access-log", "off", "access log (one JSON line per request): off, stdout, stderr or a file path")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error (change at runtime: admin /logging?level=)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if err := c.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		bad("--log-level %q: want debug, info, warn or error", logLevel)
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		bad("--log-format %q: want text or json", c.logFormat)
	}
	for name, p := range map[string]uint{"--hbone-port": hbonePort, "--readiness-port": readinessPort,
		"--metrics-port": metricsPort, "--admin-port": adminPort, "--upstream-hbone-port": upstreamHBONEPort} {
		if p > 65535 {
			bad("%s %d: not a port", name, p)
		}
	}
	if upstreamHBONEPort == 0 {
		bad("--upstream-hbone-port must not be 0")
	}
	if identity == "" && o.GatewayName != "" && o.GatewayNamespace != "" {
		identity = fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", trustDomain, o.GatewayNamespace, o.GatewayName)
	}
	if identity != "" {
		id, err := spiffeid.FromString(identity)
		if err != nil {
			bad("--identity %q: %v", identity, err)
		}
		o.Identity = id
	}
	if controlPlaneID != "" {
		id, err := spiffeid.FromString(controlPlaneID)
		if err != nil {
			bad("--control-plane-id %q: %v", controlPlaneID, err)
		}
		o.ControlPlaneID = id
	}
	if podName == "" {
		podName = getenv("POD_NAME")
	}
	if podName == "" && xdsAddr != "" {
		podName, _ = os.Hostname()
	}
	if caAddr == "" && o.CertFile == "" && !o.XDSPlaintext {
		caAddr = xdsAddr
	}
	o.XDSAddress, o.CAAddress, o.TokenFile, o.RootCertFile, o.PodName = xdsAddr, caAddr, tokenFile, rootCertFile, podName
	o.CertTTL, o.DrainTimeout, o.UpstreamHBONEPort = certTTL, drainTimeout, uint16(upstreamHBONEPort)
	if drainTimeout <= 0 {
		bad("--drain-timeout %v: must be positive", drainTimeout)
	}
	o.HBONEAddr = net.JoinHostPort(listenAddr, strconv.FormatUint(uint64(hbonePort), 10))
	o.ReadinessAddr = net.JoinHostPort(listenAddr, strconv.FormatUint(uint64(readinessPort), 10))
	o.MetricsAddr = net.JoinHostPort(listenAddr, strconv.FormatUint(uint64(metricsPort), 10))
	o.AdminAddr = net.JoinHostPort(adminAddr, strconv.FormatUint(uint64(adminPort), 10))
	if len(errs) == 0 {
		if err := o.Validate(); err != nil {
			return nil, err
		}
	}
	return &c, errors.Join(errs...)
}
