package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/istiod-lite/ca"
	"github.com/warren-mesh/warren/istiod-lite/controller"
	"github.com/warren-mesh/warren/istiod-lite/xds"
)

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

// monitoring serves /metrics and the debug endpoints warrenctl reads:
// /debug/syncz, /debug/config_dump?proxy=, /debug/status (xDS),
// /debug/ca, /debug/translation (the latest output as YAML) and
// /debug/diagnostics.
type monitoring struct {
	addr string
	reg  *prometheus.Registry
	ca   *certs.CA
	svc  *ca.Service
	xds  *xds.Server
	ctrl *controller.Controller
}

func (m *monitoring) Name() string { return "monitoring" }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (m *monitoring) Start(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.Handle("/debug/syncz", m.xds.Handler())
	mux.Handle("/debug/config_dump", m.xds.Handler())
	mux.Handle("/debug/status", m.xds.Handler())
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
		writeJSON(w, map[string]any{
			"trustDomain": m.ca.TrustDomain().Name(),
			"signer":      desc(m.ca.Signer()),
			"pending":     desc(m.ca.Pending()),
			"roots":       roots,
			"serving":     map[string]any{"id": st.ID.String(), "serial": st.Serial, "notAfter": st.NotAfter.UTC().Format(time.RFC3339), "state": st.State},
		})
	})
	mux.HandleFunc("/debug/translation", func(w http.ResponseWriter, _ *http.Request) {
		out, _ := m.ctrl.Last()
		if out == nil {
			http.Error(w, "no translation yet", http.StatusServiceUnavailable)
			return
		}
		b, err := out.YAML()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("/debug/diagnostics", func(w http.ResponseWriter, _ *http.Request) {
		out, info := m.ctrl.Last()
		if out == nil {
			http.Error(w, "no translation yet", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, map[string]any{
			"translatedAt": info.At.UTC().Format(time.RFC3339Nano), "duration": info.Duration.String(),
			"scope": info.Scope, "rounds": info.Rounds, "diagnostics": out.Diagnostics,
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
