package waypoint

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/warren-mesh/warren/waypoint/filters"
	"github.com/warren-mesh/warren/waypoint/upstream"
)

// gRPC status codes the waypoint generates.
const (
	grpcDeadlineExceeded = 4
	grpcPermissionDenied = 7
	grpcUnimplemented    = 12
	grpcInternal         = 13
	grpcUnavailable      = 14
	grpcUnauthenticated  = 16
)

// grpcCodeFor maps a failure the waypoint generates to a gRPC status.
func grpcCodeFor(status int) int {
	switch status {
	case http.StatusForbidden:
		return grpcPermissionDenied
	case http.StatusUnauthorized:
		return grpcUnauthenticated
	case http.StatusNotFound:
		return grpcUnimplemented
	case http.StatusGatewayTimeout:
		return grpcDeadlineExceeded
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusTooManyRequests:
		return grpcUnavailable
	}
	return grpcInternal
}

// fail answers a failure the waypoint generates: an HTTP status with a
// short text body, or for gRPC a trailers-only response (HTTP 200 with
// grpc-status and grpc-message in the only header block).
func (e *Engine) fail(x *exchange, status int, msg string) {
	h := x.w.Header()
	if x.grpc {
		code := grpcCodeFor(status)
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(code))
		h.Set("Grpc-Message", grpcEncode(msg))
		x.status, x.grpcStatus = http.StatusOK, strconv.Itoa(code)
		x.w.WriteHeader(http.StatusOK)
		return
	}
	x.status = status
	body := msg + "\n"
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	x.w.WriteHeader(status)
	if x.r.Method != http.MethodHead {
		n, _ := io.WriteString(x.w, body)
		x.bytesOut += int64(n)
	}
}

// answer sends a body-less answer decided by a filter (redirect, CORS
// preflight) with headers already set.
func (e *Engine) answer(x *exchange, status int) {
	x.status = status
	x.w.Header().Set("Content-Length", "0")
	x.w.WriteHeader(status)
}

// grpcEncode percent-encodes a grpc-message (gRPC over HTTP/2 spec).
func grpcEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/grpc") && !strings.HasPrefix(ct, "application/grpc-web")
}

// hopHeaders are removed when proxying (RFC 9110 §7.6.1).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Expect"}

// removeHopByHop strips hop-by-hop headers (and those Connection names)
// and returns the Upgrade protocol when the message asks for one; for
// such requests Connection: Upgrade and Upgrade are put back. "TE:
// trailers" is kept (gRPC needs it).
func removeHopByHop(h http.Header) string {
	up := ""
	if _, ok := h["Connection"]; ok {
		for _, v := range h["Connection"] {
			for f := range strings.SplitSeq(v, ",") {
				f = strings.TrimSpace(f)
				if strings.EqualFold(f, "upgrade") {
					up = h.Get("Upgrade")
				}
				if f != "" && !strings.EqualFold(f, "te") {
					h.Del(f)
				}
			}
		}
	}
	te := h["Te"]
	for _, k := range hopHeaders {
		delete(h, k)
	}
	for _, v := range te {
		if strings.EqualFold(strings.TrimSpace(v), "trailers") {
			h["Te"] = []string{"trailers"}
			break
		}
	}
	if up != "" {
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = []string{up}
	}
	return up
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBody streams src to w, flushing after each write when flush is set
// (streams of unknown length, gRPC).
func copyBody(w http.ResponseWriter, src io.Reader, flush bool) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var fl http.Flusher
	if flush {
		fl, _ = w.(http.Flusher)
	}
	var n int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := w.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// countingReader counts request body bytes.
type countingReader struct {
	r   io.ReadCloser
	n   int64
	err error // the first read error other than EOF (a malformed body)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }

// keepBody reads a request body of known size up to MaxReplayBody so it
// can be sent again (retries) and copied (mirrors). Larger or streaming
// bodies are left streaming and the request is not replayable.
func (e *Engine) keepBody(x *exchange) {
	r := x.r
	if r.Body == nil || r.Body == http.NoBody {
		x.replayable = true
		return
	}
	if r.ContentLength < 0 || r.ContentLength > e.opts.MaxReplayBody {
		return
	}
	buf := make([]byte, r.ContentLength)
	n, err := io.ReadFull(r.Body, buf)
	if err != nil {
		// Short body: send what arrived once, then the error surfaces.
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(buf[:n]), errReader{err}))
		return
	}
	x.replay, x.replayable = buf, true
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// mirror sends a copy of the request to m's backend in the background
// when the request falls in the sampled fraction. It never affects the
// response: failures and drops are only counted.
func (e *Engine) mirror(x *exchange, m mirrorState) {
	if !filters.Sample(m.num, m.den) {
		return
	}
	b := m.backend
	if !x.replayable || b.invalid != "" {
		e.metrics.mirrors.WithLabelValues(b.key, "dropped").Inc()
		return
	}
	ep := b.set.Pick(e.now(), nil)
	if ep == nil {
		e.metrics.mirrors.WithLabelValues(b.key, "failed").Inc()
		return
	}
	select {
	case e.mirrorSem <- struct{}{}:
	default:
		e.metrics.mirrors.WithLabelValues(b.key, "dropped").Inc()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.MirrorTimeout)
	req := x.r.Clone(ctx)
	req.RequestURI = ""
	req.Body, req.ContentLength = nil, int64(len(x.replay))
	if len(x.replay) > 0 {
		req.Body = io.NopCloser(bytes.NewReader(x.replay))
	}
	proto := b.proto
	if x.grpc {
		proto = upstream.H2C
	}
	e.bg.Add(1)
	go func() {
		defer func() { <-e.mirrorSem; cancel(); e.bg.Done() }()
		done := ep.Start()
		defer done()
		resp, err := e.client.RoundTrip(req, ep.Endpoint, proto)
		if err != nil {
			e.metrics.mirrors.WithLabelValues(b.key, "failed").Inc()
			return
		}
		upstream.Drain(resp.Body)
		e.metrics.mirrors.WithLabelValues(b.key, "sent").Inc()
	}()
}

// upgrade completes a protocol switch (WebSocket and other Upgrade
// requests over HTTP/1.1): the 101 goes to the client and both
// connections are spliced until either side closes.
func (e *Engine) upgrade(x *exchange, resp *http.Response) {
	back, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		x.flags = joinFlags(x.flags, "UPE")
		e.fail(x, http.StatusBadGateway, "upgrade: backend connection not writable")
		return
	}
	defer back.Close()
	conn, brw, err := http.NewResponseController(x.w).Hijack()
	if err != nil {
		x.flags = joinFlags(x.flags, "UPE")
		e.fail(x, http.StatusBadGateway, "upgrade: "+err.Error())
		return
	}
	defer conn.Close()
	x.status = http.StatusSwitchingProtocols
	resp.Header = x.w.Header()
	resp.Body = nil
	if err := writeHead(brw.Writer, resp); err != nil {
		return
	}
	cn, _ := splice(&bufConn{Conn: conn, r: brw.Reader}, back)
	x.bytesOut += cn
}

func writeHead(w *bufio.Writer, resp *http.Response) error {
	if _, err := fmt.Fprintf(w, "HTTP/1.1 %d %s\r\n", resp.StatusCode, http.StatusText(resp.StatusCode)); err != nil {
		return err
	}
	if err := resp.Header.Write(w); err != nil {
		return err
	}
	if _, err := w.WriteString("\r\n"); err != nil {
		return err
	}
	return w.Flush()
}

func joinFlags(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "" || strings.Contains(","+a+",", ","+b+","):
		return a
	}
	return a + "," + b
}

// flagsLabel keeps the metric label bounded: "-" for none.
func flagsLabel(f string) string {
	if f == "" {
		return "-"
	}
	return f
}

// principal renders the source identity for the source_principal label.
func principal(id string) string {
	if id == "" {
		return "unknown"
	}
	return id
}
