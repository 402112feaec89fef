package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/warren-mesh/warren/istiod-lite/xds/client"
	"github.com/warren-mesh/warren/waypoint/tunnel"
	"github.com/warren-mesh/warren/waypoint/xdsconfig"
	"github.com/warren-mesh/warren/ztunnel/hbone"
)

// localServers are the admin (localhost), metrics and readiness servers.
func (p *Proxy) localServers() map[string]*http.Server {
	mk := func(h http.Handler) *http.Server {
		return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	}
	return map[string]*http.Server{
		ListenerAdmin:     mk(p.AdminHandler()),
		ListenerMetrics:   mk(p.metricsHandler()),
		ListenerReadiness: mk(p.ReadinessHandler()),
	}
}

// AdminHandler serves the admin API (port 15000, localhost only):
//
//	/config_dump          the configuration held (resources as protobuf JSON), its
//	                      per-type update status, xDS client state, identity, trust bundle
//	/debug/connections    HBONE server, inbound streams and upstream pool statistics
//	/logging?level=L      read or set the log level (debug, info, warn, error)
func (p *Proxy) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/config_dump", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, p.ConfigDump())
	})
	mux.HandleFunc("/debug/connections", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, p.Connections())
	})
	mux.HandleFunc("/logging", func(w http.ResponseWriter, r *http.Request) {
		if lv := r.URL.Query().Get("level"); lv != "" {
			var l slog.Level
			if err := l.UnmarshalText([]byte(lv)); err != nil {
				http.Error(w, fmt.Sprintf("level %q: want debug, info, warn or error", lv), http.StatusBadRequest)
				return
			}
			if p.opts.LogLevel == nil {
				http.Error(w, "the log level is fixed", http.StatusNotImplemented)
				return
			}
			p.opts.LogLevel.Set(l)
		}
		cur := "info"
		if p.opts.LogLevel != nil {
			cur = strings.ToLower(p.opts.LogLevel.Level().String())
		}
		writeJSON(w, http.StatusOK, map[string]string{"level": cur})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "waypoint admin: /config_dump /debug/connections /logging?level=<debug|info|warn|error>")
	})
	return mux
}

// ReadinessHandler serves GET /healthz/ready: 200 when Ready, else 503
// with the reason.
func (p *Proxy) ReadinessHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz/ready", func(w http.ResponseWriter, r *http.Request) {
		if err := p.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

func (p *Proxy) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// ConfigDump is what /config_dump shows.
type ConfigDump struct {
	Gateway     string                          `json:"gateway"`
	WaypointFor string                          `json:"waypointFor"`
	NodeID      string                          `json:"nodeId,omitempty"`
	Ready       string                          `json:"ready"`
	Source      string                          `json:"source"` // "xds <addr>" or "file <path>"
	Identity    IdentityDump                    `json:"identity"`
	TrustBundle BundleDump                      `json:"trustBundle"`
	XDS         *client.State                   `json:"xds,omitempty"`
	Version     uint64                          `json:"version"`
	Types       map[string]xdsconfig.TypeStatus `json:"types"`
	Config      ConfigResources                 `json:"config"`
}

// IdentityDump is the waypoint's own certificate.
type IdentityDump struct {
	ID        string    `json:"id"`
	State     string    `json:"state"`
	Serial    string    `json:"serial,omitempty"`
	NotBefore time.Time `json:"notBefore,omitzero"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
	Rotations int       `json:"rotations"`
	Failures  int       `json:"failures"`
	LastError string    `json:"lastError,omitempty"`
}

// BundleDump lists the trusted roots.
type BundleDump struct {
	TrustDomain string     `json:"trustDomain"`
	Roots       []RootDump `json:"roots"`
}

// RootDump is one root certificate.
type RootDump struct {
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"notAfter"`
	SHA256   string    `json:"sha256"`
}

// ConfigResources are the resources held, as protobuf JSON, by name.
type ConfigResources struct {
	L7Services     map[string]json.RawMessage `json:"l7services"`
	Services       map[string]json.RawMessage `json:"services"`
	Workloads      map[string]json.RawMessage `json:"workloads"`
	Authorizations map[string]json.RawMessage `json:"authorizations"`
}

// ConfigDump returns the configuration and state the proxy holds.
func (p *Proxy) ConfigDump() ConfigDump {
	d := ConfigDump{Gateway: p.opts.GatewayRef(), WaypointFor: p.opts.For, Ready: "ready",
		Version: p.store.Version(), Types: p.handler.Status()}
	if err := p.Ready(); err != nil {
		d.Ready = err.Error()
	}
	if p.xds != nil {
		st := p.xds.State()
		d.XDS = &st
		d.NodeID = p.opts.NodeID().String()
		d.Source = "xds " + p.opts.XDSAddress
	} else {
		d.Source = "file " + p.opts.ConfigFile
	}
	is := p.identity.Status()
	d.Identity = IdentityDump{ID: is.ID.String(), State: is.State, Serial: is.Serial, NotBefore: is.NotBefore, NotAfter: is.NotAfter,
		Rotations: is.Rotations, Failures: is.Failures, LastError: is.LastError}
	d.TrustBundle = BundleDump{TrustDomain: p.bundle.TrustDomain().Name(), Roots: []RootDump{}}
	for _, r := range p.bundle.Roots() {
		sum := sha256.Sum256(r.Raw)
		d.TrustBundle.Roots = append(d.TrustBundle.Roots, RootDump{Subject: r.Subject.String(), NotAfter: r.NotAfter, SHA256: hex.EncodeToString(sum[:])})
	}
	cfg := p.store.Config()
	d.Config = ConfigResources{L7Services: protoJSON(cfg.L7Services), Services: protoJSON(cfg.Services),
		Workloads: protoJSON(cfg.Workloads), Authorizations: protoJSON(cfg.Authorizations)}
	return d
}

func protoJSON[V proto.Message](m map[string]V) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(m))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b, err := protojson.Marshal(m[k])
		if err != nil {
			b, _ = json.Marshal(map[string]string{"error": err.Error()})
		}
		out[k] = b
	}
	return out
}

// ConnectionStats is what /debug/connections shows.
type ConnectionStats struct {
	// Inbound is the HBONE listener (client tunnels into the waypoint)
	// and Streams what became of their CONNECTs.
	Inbound hbone.ServerStats   `json:"inbound"`
	Streams tunnel.InboundStats `json:"streams"`
	// Upstream is the pool of tunnels to endpoints' ztunnels.
	Upstream hbone.PoolStats `json:"upstream"`
}

// Connections reports the tunnels open in both directions.
func (p *Proxy) Connections() ConnectionStats {
	return ConnectionStats{Inbound: p.hbone.Stats(), Streams: p.inbound.Stats(), Upstream: p.pool.Stats()}
}
