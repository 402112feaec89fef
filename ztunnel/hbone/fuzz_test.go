package hbone

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

var updateSeeds = flag.Bool("update", false, "rewrite the fuzz seed corpus under testdata/fuzz")

// FuzzCheckRequest checks the CONNECT request validation on arbitrary
// header values: it never panics, and it accepts only CONNECT with an
// ip:port authority and nothing malformed.
func FuzzCheckRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, method, authority, name, value string, withPath, truncated bool) {
		var fields []hpack.HeaderField
		if method != "" {
			fields = append(fields, hpack.HeaderField{Name: ":method", Value: method})
		}
		if authority != "" {
			fields = append(fields, hpack.HeaderField{Name: ":authority", Value: authority})
		}
		if withPath {
			fields = append(fields, hpack.HeaderField{Name: ":path", Value: "/"})
		}
		if name != "" {
			fields = append(fields, hpack.HeaderField{Name: name, Value: value})
		}
		ap, hdr, status := checkRequest(fields, truncated)
		switch status {
		case 0, http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusRequestHeaderFieldsTooLarge:
		default:
			t.Fatalf("status %d", status)
		}
		if truncated && status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("truncated request got %d", status)
		}
		if status != 0 {
			return
		}
		if method != "CONNECT" || withPath || hdr == nil {
			t.Fatalf("accepted method %q withPath %v hdr %v", method, withPath, hdr)
		}
		want, err := netip.ParseAddrPort(authority)
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" || ap != netip.AddrPortFrom(want.Addr().Unmap(), want.Port()) {
			t.Fatalf("accepted authority %q as %v", authority, ap)
		}
		if back, err := netip.ParseAddrPort(ap.String()); err != nil || back != ap {
			t.Fatalf("authority %v does not round-trip", ap)
		}
		if name != "" && !strings.HasPrefix(name, ":") {
			if got := hdr[textproto.CanonicalMIMEHeaderKey(name)]; len(got) != 1 || got[0] != value {
				t.Fatalf("header %q = %q, want %q", name, got, value)
			}
		}
	})
}

// FuzzServerFrames feeds arbitrary frames (after a valid preface and
// SETTINGS) to a server connection: no panic, no hang, no goroutine left
// behind once the client hangs up.
func FuzzServerFrames(f *testing.F) {
	srv, err := NewServer(ServerOptions{TLSConfig: certsLessClient(), Handler: fuzzHandler(), MaxConcurrentStreams: 16})
	if err != nil {
		f.Fatal(err)
	}
	peer := mustID(f, td, "fuzz", "client")
	var start bytes.Buffer
	start.WriteString(http2.ClientPreface)
	http2.NewFramer(&start, nil).WriteSettings()
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		done := make(chan error, 1)
		go func() {
			br := bufio.NewReader(server)
			if err := readPreface(br); err != nil {
				server.Close()
				done <- err
				return
			}
			srv.mu.Lock()
			done <- srv.serveHTTP2(context.Background(), server, server, nil, peer, br)
		}()
		copied := make(chan struct{})
		go func() {
			io.Copy(io.Discard, client) // whatever the server answers
			close(copied)
		}()
		client.Write(append(start.Bytes()[:start.Len():start.Len()], data...))
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("server connection did not end after the client hung up")
		}
		<-copied
		if st := srv.Stats(); st.Connections != 0 || st.Handlers != 0 {
			t.Fatalf("left behind: %+v", st)
		}
	})
}

// fuzzHandler rejects, echoes or hangs up depending on the port.
func fuzzHandler() Handler {
	return HandlerFunc(func(r *Request) {
		switch r.Authority.Port() % 3 {
		case 0:
			r.Reject(http.StatusUnauthorized)
		case 1:
			s, err := r.Accept()
			if err != nil {
				return
			}
			io.Copy(s, s)
			s.CloseWrite()
		default:
			r.Accept()
		}
	})
}

// frameSeeds are the committed corpus of FuzzServerFrames: each a frame
// sequence sent after the preface and an empty SETTINGS.
func frameSeeds() map[string][]byte {
	seeds := map[string][]byte{}
	add := func(name string, fn func(fr *http2.Framer, block func(kv ...string) []byte)) {
		var buf, hbuf bytes.Buffer
		enc := hpack.NewEncoder(&hbuf)
		block := func(kv ...string) []byte {
			hbuf.Reset()
			for i := 0; i+1 < len(kv); i += 2 {
				enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
			}
			return append([]byte(nil), hbuf.Bytes()...)
		}
		fr := http2.NewFramer(&buf, nil)
		fr.AllowIllegalWrites = true
		fn(fr, block)
		seeds[name] = buf.Bytes()
	}
	connect := func(port string) []string { return []string{":method", "CONNECT", ":authority", "10.0.0.1:" + port} }
	hdr := func(fr *http2.Framer, id uint32, end bool, b []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b, EndStream: end, EndHeaders: true})
	}
	add("echo", func(fr *http2.Framer, block func(...string) []byte) {
		hdr(fr, 1, false, block(connect("1")...))
		fr.WriteData(1, false, []byte("hello"))
		fr.WriteData(1, true, []byte(" world"))
	})
	add("connect-end-stream", func(fr *http2.Framer, block func(...string) []byte) {
		hdr(fr, 1, true, block(connect("2")...))
	})
	add("reject-then-data", func(fr *http2.Framer, block func(...string) []byte) {
		hdr(fr, 1, false, block(connect("3")...))
		fr.WriteData(1, true, []byte("late"))
	})
	add("get", func(fr *http2.Framer, block func(...string) []byte) {
		hdr(fr, 1, true, block(":method", "GET", ":scheme", "https", ":path", "/", ":authority", "10.0.0.1:80"))
	})
	add("bad-authority", func(fr *http2.Framer, block func(...string) []byte) {
		hdr(fr, 1, false, block(":method", "CONNECT", ":authority", "example.com:80", "baggage", "a=b"))
	})
	add("rapid-reset", func(fr *http2.Framer, block func(...string) []byte) {
		for id := uint32(1); id < 12; id += 2 {
			hdr(fr, id, false, block(connect("4")...))
			fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
	})
	add("control", func(fr *http2.Framer, block func(...string) []byte) {
		fr.WritePing(false, [8]byte{1, 2, 3})
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20})
		fr.WriteSettingsAck()
		fr.WriteWindowUpdate(0, 1<<20)
		hdr(fr, 1, false, block(connect("1")...))
		fr.WriteWindowUpdate(1, 1000)
		fr.WritePriority(1, http2.PriorityParam{StreamDep: 0, Weight: 10})
		fr.WriteRawFrame(0x42, 0, 1, []byte("unknown frame type"))
		fr.WriteData(1, true, []byte("x"))
	})
	add("continuation", func(fr *http2.Framer, block func(...string) []byte) {
		b := block(append(connect("1"), "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")...)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:5]})
		fr.WriteContinuation(1, true, b[5:])
		fr.WriteData(1, true, nil)
	})
	add("padded", func(fr *http2.Framer, block func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(connect("1")...), EndHeaders: true, PadLength: 7,
			Priority: http2.PriorityParam{StreamDep: 0, Weight: 200}})
		fr.WriteDataPadded(1, true, []byte("padded"), make([]byte, 20))
	})
	add("trailers", func(fr *http2.Framer, block func(...string) []byte) {
		hdr(fr, 1, false, block(connect("1")...))
		hdr(fr, 1, true, block("x-trailer", "no"))
	})
	add("data-idle-stream", func(fr *http2.Framer, block func(...string) []byte) {
		fr.WriteData(7, false, []byte("who?"))
	})
	add("goaway", func(fr *http2.Framer, block func(...string) []byte) {
		hdr(fr, 1, false, block(connect("1")...))
		fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		fr.WriteData(1, true, []byte("bye"))
	})
	add("flood-over-limit", func(fr *http2.Framer, block func(...string) []byte) {
		for id := uint32(1); id < 80; id += 2 {
			hdr(fr, id, false, block(connect("5")...))
		}
	})
	seeds["huge-frame-header"] = []byte{0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01}
	seeds["garbage"] = []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	return seeds
}

// TestFuzzSeeds keeps the committed corpus equal to frameSeeds (rewrite
// with go test -run TestFuzzSeeds -update) and runs every seed once more
// through the property checks (go test runs them too).
func TestFuzzSeeds(t *testing.T) {
	frames := frameSeeds()
	requests := map[string][]any{
		"connect":        {"CONNECT", "10.0.0.1:8080", "baggage", "k8s.namespace.name=a", false, false},
		"connect-ipv6":   {"CONNECT", "[2001:db8::1]:443", "forwarded", `for="[2001:db8::2]"`, false, false},
		"connect-mapped": {"CONNECT", "[::ffff:10.0.0.1]:80", "", "", false, false},
		"get":            {"GET", "10.0.0.1:80", "", "", true, false},
		"connect-path":   {"CONNECT", "10.0.0.1:80", "", "", true, false},
		"hostname":       {"CONNECT", "example.com:80", "", "", false, false},
		"zone":           {"CONNECT", "[fe80::1%eth0]:80", "", "", false, false},
		"upper-header":   {"CONNECT", "10.0.0.1:80", "X-Upper", "v", false, false},
		"te":             {"CONNECT", "10.0.0.1:80", "te", "gzip", false, false},
		"truncated":      {"CONNECT", "10.0.0.1:80", "", "", false, true},
		"pseudo-status":  {"CONNECT", "10.0.0.1:80", ":status", "200", false, false},
		"no-method":      {"", "10.0.0.1:80", "", "", false, false},
	}
	write := map[string]string{}
	for name, b := range frames {
		write[filepath.Join("FuzzServerFrames", name)] = corpusFile(b)
	}
	for name, args := range requests {
		write[filepath.Join("FuzzCheckRequest", name)] = corpusFile(args...)
	}
	for rel, content := range write {
		path := filepath.Join("testdata", "fuzz", rel)
		if *updateSeeds {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Errorf("seed %s is missing or stale (go test -run TestFuzzSeeds -update): %v", path, err)
		}
	}
}

// corpusFile renders values in the "go test fuzz v1" format.
func corpusFile(vals ...any) string {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case bool:
			fmt.Fprintf(&b, "bool(%v)\n", v)
		}
	}
	return b.String()
}
