package main

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/warren-mesh/warren/istiod-lite/deploy"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestDeployerFlags parses exactly the flags istiod-lite's waypoint
// deployer renders into the Deployment.
func TestDeployerFlags(t *testing.T) {
	d := &deploy.Options{XDSAddress: "istiod-lite.warren-system.svc:15012", CAAddress: "istiod-lite.warren-system.svc:15012"}
	args := d.Args(deploy.Waypoint{Waypoint: translate.Waypoint{Namespace: "shop", Name: "waypoint", For: "all",
		Identity: "spiffe://cluster.local/ns/shop/sa/waypoint"}})
	c, err := parseFlags(args, env(map[string]string{"POD_NAME": "waypoint-5f7c9-x2x"}), io.Discard)
	if err != nil {
		t.Fatalf("deployer flags %v: %v", args, err)
	}
	o := c.opts
	for _, chk := range []struct{ name, got, want string }{
		{"gateway", o.GatewayRef(), "shop/waypoint"},
		{"waypoint-for", o.For, "all"},
		{"identity", o.Identity.String(), "spiffe://cluster.local/ns/shop/sa/waypoint"},
		{"xds", o.XDSAddress, "istiod-lite.warren-system.svc:15012"},
		{"ca", o.CAAddress, "istiod-lite.warren-system.svc:15012"},
		{"token", o.TokenFile, deploy.TokenFile},
		{"roots", o.RootCertFile, deploy.RootCertFile},
		{"hbone", o.HBONEAddr, ":15008"},
		{"readiness", o.ReadinessAddr, ":15021"},
		{"metrics", o.MetricsAddr, ":15020"},
		{"admin", o.AdminAddr, "127.0.0.1:15000"},
		{"node", o.NodeID().String(), "waypoint~shop/waypoint~waypoint-5f7c9-x2x"},
		{"control plane", o.ControlPlaneID.String(), "spiffe://cluster.local/ns/warren-system/sa/istiod-lite"},
	} {
		if chk.got != chk.want {
			t.Errorf("%s = %q, want %q", chk.name, chk.got, chk.want)
		}
	}
	if o.XDSPlaintext || o.ConfigFile != "" || o.CertFile != "" || c.logLevel != slog.LevelInfo || c.accessLog != "off" {
		t.Errorf("unexpected non-defaults: %+v", c)
	}
}

func TestFlagValidation(t *testing.T) {
	base := []string{"--gateway-name=waypoint", "--gateway-namespace=shop", "--xds-address=istiod:15012",
		"--token-file=/t", "--root-cert-file=/r", "--pod-name=wp-0"}
	ok, err := parseFlags(base, env(nil), io.Discard)
	if err != nil {
		t.Fatalf("minimal flags: %v", err)
	}
	if ok.opts.Identity.String() != "spiffe://cluster.local/ns/shop/sa/waypoint" || ok.opts.CAAddress != "istiod:15012" {
		t.Errorf("derived identity %s, CA %q", ok.opts.Identity, ok.opts.CAAddress)
	}
	static, err := parseFlags([]string{"--gateway-name=w", "--gateway-namespace=ns", "--config-file=c.yaml", "--cert-file=c.pem",
		"--key-file=k.pem", "--root-cert-file=r.pem", "--hbone-port=0", "--drain-timeout=3s", "--log-format=json", "--log-level=debug"}, env(nil), io.Discard)
	if err != nil {
		t.Fatalf("static mode: %v", err)
	}
	if static.opts.CAAddress != "" || static.opts.PodName != "" || static.opts.HBONEAddr != ":0" || static.opts.DrainTimeout != 3*time.Second || static.logLevel != slog.LevelDebug {
		t.Errorf("static mode options: %+v", static.opts)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no gateway", []string{"--xds-address=istiod:15012", "--token-file=/t", "--root-cert-file=/r"}, "gateway name and namespace are required"},
		{"waypoint-for", append(base, "--waypoint-for=pods"), `waypoint-for "pods"`},
		{"identity", append(base, "--identity=cluster.local/ns/shop/sa/waypoint"), "--identity"},
		{"identity outside a namespace", append(base, "--identity=spiffe://cluster.local/waypoint"), "identity"},
		{"control plane id", append(base, "--control-plane-id=istiod"), "--control-plane-id"},
		{"log level", append(base, "--log-level=loud"), "--log-level"},
		{"log format", append(base, "--log-format=xml"), "--log-format"},
		{"port range", append(base, "--metrics-port=70000"), "--metrics-port 70000"},
		{"port clash", append(base, "--metrics-port=15021"), "both listen on port 15021"},
		{"upstream port", append(base, "--upstream-hbone-port=0"), "--upstream-hbone-port"},
		{"drain", append(base, "--drain-timeout=0s"), "--drain-timeout"},
		{"two config sources", append(base, "--config-file=c.yaml"), "not both"},
		{"static without identity", []string{"--gateway-name=w", "--gateway-namespace=ns", "--config-file=c.yaml", "--root-cert-file=r"}, "CA address"},
		{"half a static identity", []string{"--gateway-name=w", "--gateway-namespace=ns", "--config-file=c.yaml", "--cert-file=c"}, "both the certificate and the key"},
		{"no token", []string{"--gateway-name=w", "--gateway-namespace=ns", "--xds-address=istiod:15012", "--root-cert-file=/r", "--pod-name=p"}, "token file"},
		{"plaintext xDS still needs an identity source", []string{"--gateway-name=w", "--gateway-namespace=ns", "--xds-address=istiod:15010", "--xds-plaintext", "--pod-name=p"}, "CA address"},
		{"stray argument", append(base, "extra"), "unexpected arguments"},
		{"unknown flag", append(base, "--colour=blue"), "colour"},
	} {
		_, err := parseFlags(c.args, env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error mentioning %q", c.name, err, c.want)
		}
	}
	// POD_NAME fills the node ID; the flag wins over it.
	c, err := parseFlags(append(base[:5:5], "--pod-name=flag-pod"), env(map[string]string{"POD_NAME": "env-pod"}), io.Discard)
	if err != nil || c.opts.PodName != "flag-pod" {
		t.Errorf("--pod-name over POD_NAME: %v %q", err, c.opts.PodName)
	}
	c, err = parseFlags(base[:5], env(map[string]string{"POD_NAME": "env-pod"}), io.Discard)
	if err != nil || c.opts.PodName != "env-pod" {
		t.Errorf("POD_NAME: %v %q", err, c.opts.PodName)
	}
}
