package accesslog

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// Entry is one request's log line.
type Entry struct {
	Start time.Time `json:"start_time"`
	// Source is the client's verified SPIFFE identity, SourceNamespace its
	// namespace and SourceAddr its address.
	Source          string `json:"source_identity,omitempty"`
	SourceNamespace string `json:"source_namespace,omitempty"`
	SourceAddr      string `json:"source_address,omitempty"`
	// Destination is the Service key ("<ns>/<hostname>") and port.
	Destination string `json:"destination_service"`
	Port        uint32 `json:"destination_port"`
	Protocol    string `json:"protocol"`
	Method      string `json:"method"`
	Authority   string `json:"authority"`
	Path        string `json:"path"`
	// Route is the RouteRef of the matched route ("default" without a
	// table, "" when none matched).
	Route string `json:"route"`
	// Backend is the chosen backend Service key, Endpoint the address.
	Backend  string `json:"backend,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
	Status   int    `json:"status"`
	// GRPCStatus is set for gRPC requests ("" when absent).
	GRPCStatus string  `json:"grpc_status,omitempty"`
	DurationMs float64 `json:"duration_ms"`
	Attempts   int     `json:"attempts"`
	Retries    int     `json:"retries"`
	BytesIn    int64   `json:"bytes_received"`
	BytesOut   int64   `json:"bytes_sent"`
	// Flags explain a failure: NR no route, DENY authorization,
	// UF upstream connect failure, UT upstream timeout, RT request
	// timeout, URX retries exhausted, RBE retry budget exhausted, NE no
	// endpoint, IB invalid backend, DC downstream closed.
	Flags     string `json:"flags,omitempty"`
	TraceID   string `json:"trace_id,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Logger writes entries as JSON lines. A nil *Logger discards.
type Logger struct {
	mu sync.Mutex
	w  io.Writer
}

// New returns a Logger writing to w; nil when w is nil.
func New(w io.Writer) *Logger {
	if w == nil {
		return nil
	}
	return &Logger{w: w}
}

// Log writes e. Write errors are dropped: logging never fails a request.
func (l *Logger) Log(e *Entry) {
	if l == nil {
		return
	}
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	b = append(b, '\n')
	l.mu.Lock()
	_, _ = l.w.Write(b)
	l.mu.Unlock()
}
