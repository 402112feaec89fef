// Command waypoint is Warren's L7 proxy, one Deployment per waypoint
// Gateway (istiod-lite's deployer renders the flags): it terminates HBONE
// on 15008, applies the Gateway API routes and policies of the Services
// (and, with waypoint-for workload|all, the pods) that use it, and
// forwards over HBONE to the endpoints' ztunnels (plain TCP for
// endpoints outside the mesh). Configuration arrives over delta xDS from
// istiod-lite, the identity spiffe://<td>/ns/<gateway-ns>/sa/<gateway-name>
// from its CA. Ports: 15008 HBONE, 15000 admin (localhost), 15020
// metrics, 15021 readiness (/healthz/ready).
//
// Without a control plane (tests, demos) --config-file serves a YAML of
// warren.v1 resources as `warrenctl x translate` prints them, with
// --cert-file/--key-file as the identity.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/warren-mesh/warren/waypoint/proxy"
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "waypoint:", err)
		os.Exit(2)
	}
	level := new(slog.LevelVar)
	level.Set(cfg.logLevel)
	log := newLogger(os.Stderr, cfg.logFormat, level)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, level, log); err != nil {
		log.Error("waypoint: exiting", "error", err)
		os.Exit(1)
	}
}

// run serves until ctx ends (SIGTERM), then drains.
func run(ctx context.Context, cfg *config, level *slog.LevelVar, log *slog.Logger) error {
	o := cfg.opts
	o.Logger, o.LogLevel = log, level
	closeLog := func() error { return nil }
	switch cfg.accessLog {
	case "", "off":
	case "stdout":
		o.AccessLog = os.Stdout
	case "stderr":
		o.AccessLog = os.Stderr
	default:
		f, err := os.OpenFile(cfg.accessLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("--access-log: %w", err)
		}
		o.AccessLog, closeLog = f, f.Close
	}
	defer closeLog()
	p, err := proxy.New(o)
	if err != nil {
		return err
	}
	return p.Start(ctx)
}

func newLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	ho := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}
