package proxy

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/istiod-lite/xds/client"
	"github.com/warren-mesh/warren/waypoint/tunnel"
)

// Defaults (DESIGN §3 ports; paths as the waypoint deployer renders them).
const (
	DefaultHBONEAddr      = ":15008"
	DefaultAdminAddr      = "127.0.0.1:15000"
	DefaultMetricsAddr    = ":15020"
	DefaultReadinessAddr  = ":15021"
	DefaultDrainTimeout   = 20 * time.Second
	DefaultRootCertPoll   = time.Second
	ControlPlaneNamespace = "warren-system"
	ControlPlaneAccount   = "istiod-lite"
)

// Options configure a Proxy. Exactly one configuration source: XDSAddress
// or ConfigFile. Exactly one identity source: CAAddress or
// CertFile/KeyFile.
type Options struct {
	// GatewayName and GatewayNamespace name the waypoint Gateway this
	// process serves. Required.
	GatewayName, GatewayNamespace string
	// For is the Gateway's waypoint-for: service (default), workload,
	// all or none.
	For string
	// Identity is the waypoint's SPIFFE ID (the deployer's
	// spiffe://<td>/ns/<gateway-ns>/sa/<gateway-name>); its trust domain is
	// the mesh's. Required.
	Identity spiffeid.ID
	// PodName completes the xDS node ID waypoint~<ns>/<gateway>~<pod>.
	// Required with XDSAddress.
	PodName string

	// XDSAddress is istiod-lite's xDS endpoint (host:port, 15012 with TLS).
	XDSAddress string
	// XDSPlaintext dials XDSAddress without TLS and without a token (the
	// 15010 test port). Never in production.
	XDSPlaintext bool
	// CAAddress is istiod-lite's certificate service (15012).
	CAAddress string
	// TokenFile holds the bearer token (projected ServiceAccount token,
	// audience warren-ca) for the CA and TLS xDS; re-read on every use.
	TokenFile string
	// RootCertFile holds the roots that verify istiod-lite (the
	// warren-ca-root-cert ConfigMap) and seed the trust bundle, which xDS
	// then keeps current. When missing the proxy waits for it (not ready
	// meanwhile). Required unless ConfigFile supplies a trustBundle.
	RootCertFile string
	// ControlPlaneID is the identity istiod-lite must present; default
	// spiffe://<td>/ns/warren-system/sa/istiod-lite.
	ControlPlaneID spiffeid.ID
	// CertTTL is the lifetime asked of the CA (0: the CA's default).
	CertTTL time.Duration

	// ConfigFile is a static configuration (what `warrenctl x translate`
	// prints), reloaded when it changes.
	ConfigFile string
	// CertFile (chain PEM) and KeyFile (PEM) are a static identity, re-read
	// at half-life.
	CertFile, KeyFile string

	// Listen addresses; "" takes the default, a port 0 an ephemeral one
	// (tests; Addr reports it).
	HBONEAddr, AdminAddr, MetricsAddr, ReadinessAddr string
	// UpstreamHBONEPort is where endpoints' ztunnels accept HBONE;
	// default 15008 (tests use others).
	UpstreamHBONEPort uint16
	// DrainTimeout bounds the graceful drain after the context ends;
	// default 20s.
	DrainTimeout time.Duration
	// RootCertPoll is how often a missing RootCertFile is looked for;
	// default 1s.
	RootCertPoll time.Duration

	// AccessLog receives one JSON line per request; nil disables it.
	AccessLog io.Writer
	// LogLevel is what /logging?level= changes (nil: fixed).
	LogLevel *slog.LevelVar
	// Logger hears the proxy's events; default discard.
	Logger *slog.Logger
	// Registry receives every metric and backs /metrics; default a new
	// one with the Go and process collectors.
	Registry *prometheus.Registry
}

// GatewayRef is "<namespace>/<name>".
func (o *Options) GatewayRef() string { return o.GatewayNamespace + "/" + o.GatewayName }

// NodeID is the xDS node ID.
func (o *Options) NodeID() client.NodeID {
	return client.WaypointNodeID(o.GatewayNamespace, o.GatewayName, o.PodName)
}

// Validate checks the options and fills in defaults.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if o.GatewayName == "" || o.GatewayNamespace == "" {
		bad("gateway name and namespace are required")
	} else if err := (client.NodeID{Kind: client.KindWaypoint, Namespace: o.GatewayNamespace, Gateway: o.GatewayName, Pod: "x"}).Validate(); err != nil {
		bad("gateway: %v", err)
	}
	switch o.For {
	case "":
		o.For = tunnel.ForService
	case tunnel.ForService, tunnel.ForWorkload, tunnel.ForAll, tunnel.ForNone:
	default:
		bad("waypoint-for %q: want service, workload, all or none", o.For)
	}
	if o.Identity.IsZero() {
		bad("identity is required")
	} else if _, _, err := certs.ParseWorkloadID(o.Identity); err != nil {
		bad("identity %s: %v", o.Identity, err)
	}
	if o.ControlPlaneID.IsZero() && !o.Identity.IsZero() {
		id, err := certs.WorkloadID(o.Identity.TrustDomain(), ControlPlaneNamespace, ControlPlaneAccount)
		if err != nil {
			bad("control plane identity: %v", err)
		}
		o.ControlPlaneID = id
	}
	switch {
	case o.XDSAddress != "" && o.ConfigFile != "":
		bad("configuration comes from xDS or a config file, not both")
	case o.XDSAddress == "" && o.ConfigFile == "":
		bad("an xDS address or a config file is required")
	case o.XDSAddress != "":
		if err := checkHostPort(o.XDSAddress); err != nil {
			bad("xds address: %v", err)
		}
		if o.PodName == "" {
			bad("pod name is required with xDS (it is part of the node ID)")
		} else if err := o.NodeID().Validate(); err != nil {
			bad("node ID: %v", err)
		}
	}
	if o.XDSPlaintext && o.XDSAddress == "" {
		bad("xds plaintext needs an xDS address")
	}
	switch {
	case (o.CertFile == "") != (o.KeyFile == ""):
		bad("a static identity needs both the certificate and the key file")
	case o.CertFile != "" && o.CAAddress != "":
		bad("the identity comes from the CA or from certificate files, not both")
	case o.CertFile == "" && o.CAAddress == "":
		bad("a CA address (or a certificate and key file) is required")
	case o.CAAddress != "":
		if err := checkHostPort(o.CAAddress); err != nil {
			bad("ca address: %v", err)
		}
	}
	needsToken := o.CAAddress != "" || (o.XDSAddress != "" && !o.XDSPlaintext)
	if needsToken && o.TokenFile == "" {
		bad("a token file is required to authenticate to the CA and xDS")
	}
	needsRoots := o.CAAddress != "" || (o.XDSAddress != "" && !o.XDSPlaintext) || o.ConfigFile == ""
	if needsRoots && o.RootCertFile == "" {
		bad("a root certificate file is required (it verifies istiod-lite and seeds the trust bundle)")
	}
	if o.HBONEAddr == "" {
		o.HBONEAddr = DefaultHBONEAddr
	}
	if o.AdminAddr == "" {
		o.AdminAddr = DefaultAdminAddr
	}
	if o.MetricsAddr == "" {
		o.MetricsAddr = DefaultMetricsAddr
	}
	if o.ReadinessAddr == "" {
		o.ReadinessAddr = DefaultReadinessAddr
	}
	type bound struct{ name, host, port string }
	var binds []bound
	for _, l := range []struct{ name, addr string }{{"hbone", o.HBONEAddr}, {"admin", o.AdminAddr}, {"metrics", o.MetricsAddr}, {"readiness", o.ReadinessAddr}} {
		host, port, err := net.SplitHostPort(l.addr)
		if err != nil {
			bad("%s address %q: %v", l.name, l.addr, err)
			continue
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			bad("%s address %q: port %q is not 0-65535", l.name, l.addr, port)
			continue
		}
		if p == 0 {
			continue // ephemeral: never clashes
		}
		for _, b := range binds {
			if b.port == port && (wildcard(b.host) || wildcard(host) || b.host == host) {
				bad("%s and %s both listen on port %s", b.name, l.name, port)
			}
		}
		binds = append(binds, bound{l.name, host, port})
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	} else if o.DrainTimeout < 0 {
		bad("drain timeout %v is negative", o.DrainTimeout)
	}
	if o.RootCertPoll <= 0 {
		o.RootCertPoll = DefaultRootCertPoll
	}
	if o.CertTTL < 0 {
		bad("certificate TTL %v is negative", o.CertTTL)
	}
	if o.UpstreamHBONEPort == 0 {
		o.UpstreamHBONEPort = tunnel.DefaultHBONEPort
	}
	return errors.Join(errs...)
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" || strings.TrimSpace(host) != host {
		return fmt.Errorf("%q: want host:port", s)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return fmt.Errorf("%q: port %q is not 1-65535", s, port)
	}
	return nil
}

func wildcard(host string) bool { return host == "" || host == "0.0.0.0" || host == "::" }
