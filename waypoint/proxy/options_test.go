package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// deployerOptions are the options the waypoint deployer's flags give.
func deployerOptions() Options {
	return Options{GatewayName: "waypoint", GatewayNamespace: "shop", For: "service", Identity: waypointID, PodName: "waypoint-7d9f-abc",
		XDSAddress: "istiod-lite.warren-system.svc:15012", CAAddress: "istiod-lite.warren-system.svc:15012",
		TokenFile: "/var/run/secrets/tokens/warren-ca-token", RootCertFile: "/var/run/secrets/warren/root-cert.pem",
		HBONEAddr: ":15008", ReadinessAddr: ":15021", MetricsAddr: ":15020"}
}

func TestOptionsValidate(t *testing.T) {
	o := deployerOptions()
	if err := o.Validate(); err != nil {
		t.Fatalf("the deployer's options: %v", err)
	}
	if o.AdminAddr != "127.0.0.1:15000" || o.ControlPlaneID.String() != "spiffe://cluster.local/ns/warren-system/sa/istiod-lite" ||
		o.UpstreamHBONEPort != 15008 || o.DrainTimeout != DefaultDrainTimeout || o.NodeID().String() != "waypoint~shop/waypoint~waypoint-7d9f-abc" {
		t.Errorf("defaults: %+v", o)
	}
	static := Options{GatewayName: "waypoint", GatewayNamespace: "shop", Identity: waypointID, ConfigFile: "c.yaml",
		CertFile: "c.pem", KeyFile: "k.pem", RootCertFile: "r.pem"}
	if err := static.Validate(); err != nil {
		t.Errorf("static mode: %v", err)
	}
	if static.For != "service" {
		t.Errorf("default waypoint-for %q", static.For)
	}
	for _, c := range []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"no gateway", func(o *Options) { o.GatewayName = "" }, "gateway name and namespace"},
		{"bad gateway name", func(o *Options) { o.GatewayName = "Way_Point" }, "gateway"},
		{"bad waypoint-for", func(o *Options) { o.For = "pods" }, `waypoint-for "pods"`},
		{"no identity", func(o *Options) { o.Identity = spiffeid.ID{} }, "identity is required"},
		{"identity not a workload ID", func(o *Options) { o.Identity = spiffeid.RequireFromString("spiffe://cluster.local/waypoint") }, "identity"},
		{"xDS and file", func(o *Options) { o.ConfigFile = "x.yaml" }, "not both"},
		{"no config source", func(o *Options) { o.XDSAddress = "" }, "xDS address or a config file"},
		{"bad xDS address", func(o *Options) { o.XDSAddress = "istiod-lite" }, "xds address"},
		{"no pod name", func(o *Options) { o.PodName = "" }, "pod name"},
		{"bad pod name", func(o *Options) { o.PodName = "Pod_1" }, "node ID"},
		{"cert without key", func(o *Options) { o.CAAddress, o.CertFile = "", "c.pem" }, "both the certificate and the key"},
		{"CA and cert files", func(o *Options) { o.CertFile, o.KeyFile = "c.pem", "k.pem" }, "not both"},
		{"no identity source", func(o *Options) { o.CAAddress = "" }, "CA address"},
		{"no token", func(o *Options) { o.TokenFile = "" }, "token file"},
		{"no roots", func(o *Options) { o.RootCertFile = "" }, "root certificate file"},
		{"port clash", func(o *Options) { o.MetricsAddr = ":15021" }, "metrics and readiness both listen on port 15021"},
		{"port clash with a specific host", func(o *Options) { o.AdminAddr = "127.0.0.1:15008" }, "hbone and admin"},
		{"bad port", func(o *Options) { o.HBONEAddr = ":70000" }, "not 0-65535"},
		{"negative drain", func(o *Options) { o.DrainTimeout = -time.Second }, "negative"},
		{"plaintext without xDS", func(o *Options) { o.XDSAddress, o.ConfigFile, o.XDSPlaintext = "", "c.yaml", true }, "plaintext"},
	} {
		o := deployerOptions()
		c.change(&o)
		err := o.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error mentioning %q", c.name, err, c.want)
		}
	}
	// Ephemeral ports never clash; distinct hosts on one port do not either.
	o = deployerOptions()
	o.HBONEAddr, o.MetricsAddr, o.ReadinessAddr, o.AdminAddr = "127.0.0.2:0", "127.0.0.2:0", "127.0.0.3:9000", "127.0.0.4:9000"
	if err := o.Validate(); err != nil {
		t.Errorf("ephemeral ports / distinct hosts: %v", err)
	}
}
