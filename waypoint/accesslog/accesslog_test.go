package accesslog

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestLogWritesJSONLines(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf)
	l.Log(&Entry{Start: time.Unix(0, 0).UTC(), Source: "spiffe://td/ns/a/sa/b", Destination: "shop/echo", Route: "HTTPRoute/shop/r/0/0",
		Backend: "shop/echo", Status: 503, Retries: 2, BytesIn: 3, BytesOut: 4, DurationMs: 1.5, Flags: "UF"})
	l.Log(&Entry{Status: 200})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"source_identity": "spiffe://td/ns/a/sa/b", "route": "HTTPRoute/shop/r/0/0", "backend": "shop/echo",
		"status": 503.0, "duration_ms": 1.5, "retries": 2.0, "bytes_received": 3.0, "bytes_sent": 4.0, "flags": "UF"} {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	var nilLogger *Logger
	nilLogger.Log(&Entry{}) // discards
	if New(nil) != nil {
		t.Fatal("New(nil)")
	}
}
