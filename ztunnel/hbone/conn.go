package hbone

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Protocol parameters (DESIGN §4). Windows are large so a single stream can
// fill a fast link. Frames stay at the 16 KiB default: 64 KiB and 256 KiB
// frames measured no cheaper (system calls and AES-GCM dominate) and
// would let one bulk stream delay the others longer.
const (
	streamWindow      = 4 << 20  // advertised per-stream receive window
	connWindow        = 16 << 20 // advertised connection receive window
	maxFrameSize      = 16 << 10 // advertised SETTINGS_MAX_FRAME_SIZE
	initialWindowSize = 65535    // RFC 9113 default before SETTINGS
	maxWindow         = 1<<31 - 1

	// outLimit is how many pending output bytes make stream writers wait
	// for the writer goroutine; maxOutBacklog is how many bytes of frames
	// the connection queues before it decides the peer does not read
	// (control frames answering a flood are never waited for).
	outLimit      = 256 << 10
	maxOutBacklog = 4 << 20

	// coalesceBelow: the writer yields once before sending a batch
	// smaller than this.
	coalesceBelow = 16 << 10

	// linger bounds a graceful close: after GOAWAY and close_notify the
	// peer has this long to close its end.
	linger = time.Second
)

// role is what differs between the client and the server end.
type role interface {
	// headers handles a decoded HEADERS block; called by the read loop
	// without c.mu held.
	headers(f *http2.MetaHeadersFrame) error
	// loadLocked is work besides open streams that keeps the connection
	// busy: dial reservations (client), running handlers (server).
	loadLocked() int
	// idle runs from the idle timer without c.mu held.
	idle()
	// closed runs once after the connection closed, without c.mu held.
	closed()
}

// conn is one HTTP/2 connection over TLS, either end. One mutex guards the
// connection and all its streams; no I/O happens under it. A read loop
// parses frames (http2.Framer), a writer goroutine sends the frames every
// other goroutine appends to the output buffer, so the read loop never
// blocks on the socket's write side.
type conn struct {
	role        role
	server      bool
	nc          net.Conn   // the TLS connection
	raw         net.Conn   // the transport under it; closed to abort
	bc          *batchConn // between the two, or nil
	peer        spiffeid.ID
	remote      string // for errors
	fr          *http2.Framer
	idleTimeout time.Duration
	maxHeaders  uint32 // SETTINGS_MAX_HEADER_LIST_SIZE we advertise
	maxStreams  uint32 // SETTINGS_MAX_CONCURRENT_STREAMS we advertise (server)

	mu       sync.Mutex
	out      []byte // frames waiting for the writer
	wfr      *http2.Framer
	henc     *hpack.Encoder
	hbuf     bytes.Buffer
	writeSig chan struct{} // cap 1: out has something (or a close is due)
	spaceCh  chan struct{} // closed when out is taken; nil when nobody waits

	closeAfterFlush bool  // send close_notify once out drains
	writeClosed     bool  // close_notify sent or the connection is dead
	closeReason     error // why a graceful close was started

	streams        map[uint32]*Stream
	nextID         uint32 // client: next stream id
	lastPeerID     uint32 // server: highest stream id the peer opened
	peerMaxFrame   uint32
	peerInitWindow int64
	peerMaxStreams uint32
	sendWindow     int64
	connWaiters    []*Stream // writers waiting for connection window
	recvWindow     int64     // bytes the peer may still send
	recvCredit     int64     // consumed bytes not yet returned

	goAwaySent  bool
	goAwayRecv  bool
	refused     int // streams refused for exceeding the limit
	earlyResets int // streams the peer reset before any answer (rapid reset)

	idleTimer *time.Timer
	idleSince time.Time

	closed     bool
	err        error
	done       chan struct{}
	writerDone chan struct{}
	flushed    chan struct{} // closed once a graceful close sent everything
}

// h2Error is a connection error answered with GOAWAY(code).
type h2Error struct {
	code http2.ErrCode
	msg  string
}

func (e *h2Error) Error() string { return fmt.Sprintf("hbone: %s (%v)", e.msg, e.code) }

func connErr(code http2.ErrCode, format string, args ...any) error {
	return &h2Error{code: code, msg: fmt.Sprintf(format, args...)}
}

// outWriter lets the write-side Framer append frames to c.out (c.mu held).
type outWriter conn

func (w *outWriter) Write(p []byte) (int, error) {
	c := (*conn)(w)
	if c.writeClosed {
		return len(p), nil
	}
	if c.out == nil {
		c.out = getOutBuf()
	}
	c.out = append(c.out, p...)
	return len(p), nil
}

func newConn(r role, server bool, idleTimeout time.Duration, maxHeaders, maxStreams uint32) *conn {
	c := &conn{
		role:           r,
		server:         server,
		idleTimeout:    idleTimeout,
		maxHeaders:     maxHeaders,
		maxStreams:     maxStreams,
		writeSig:       make(chan struct{}, 1),
		streams:        make(map[uint32]*Stream),
		nextID:         1,
		peerMaxFrame:   16384,
		peerInitWindow: initialWindowSize,
		peerMaxStreams: ^uint32(0),
		sendWindow:     initialWindowSize,
		recvWindow:     connWindow,
		done:           make(chan struct{}),
		writerDone:     make(chan struct{}),
		flushed:        make(chan struct{}),
	}
	c.wfr = http2.NewFramer((*outWriter)(c), nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	return c
}

// attach binds the established TLS connection, queues the connection
// preface and starts the writer; the caller then runs run. It reports
// false (and closes raw) if the connection was aborted meanwhile.
//
// nc is the TLS connection, raw the transport under it (closed to abort)
// and bc, if not nil, the batching layer between them. Frames are read
// from r, or from nc if r is nil.
func (c *conn) attach(nc, raw net.Conn, bc *batchConn, peer spiffeid.ID, r io.Reader) bool {
	if r == nil {
		r = nc
	}
	c.bc = bc
	c.fr = http2.NewFramer(nil, r)
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(maxFrameSize)
	c.fr.MaxHeaderListSize = c.maxHeaders
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)

	settings := []http2.Setting{
		{ID: http2.SettingInitialWindowSize, Val: streamWindow},
		{ID: http2.SettingMaxFrameSize, Val: maxFrameSize},
		{ID: http2.SettingMaxHeaderListSize, Val: c.maxHeaders},
	}
	if c.server {
		settings = append(settings, http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.maxStreams})
	} else {
		settings = append(settings,
			http2.Setting{ID: http2.SettingEnablePush, Val: 0},
			http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 0})
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		raw.Close()
		return false
	}
	c.nc, c.raw, c.peer = nc, raw, peer
	c.remote = raw.RemoteAddr().String()
	if !c.server {
		(*outWriter)(c).Write([]byte(http2.ClientPreface))
	}
	c.wfr.WriteSettings(settings...)
	c.wfr.WriteWindowUpdate(0, connWindow-initialWindowSize)
	c.kickLocked()
	c.mu.Unlock()
	go c.writeLoop()
	return true
}

// kickLocked wakes the writer.
func (c *conn) kickLocked() {
	select {
	case c.writeSig <- struct{}{}:
	default:
	}
}

// backlogLocked fails the connection when frames pile up because the peer
// stops reading while it keeps us answering (PING, SETTINGS, resets).
func (c *conn) backlogLocked() error {
	if len(c.out) > maxOutBacklog {
		return connErr(http2.ErrCodeEnhanceYourCalm, "peer %s does not read its frames (%d bytes queued)", c.remote, len(c.out))
	}
	return nil
}

// writeLoop sends whatever is queued, in batches, until the connection dies.
func (c *conn) writeLoop() {
	defer close(c.writerDone)
	for {
		select {
		case <-c.writeSig:
		case <-c.done:
			return
		}
		c.mu.Lock()
		if len(c.out) < coalesceBelow && len(c.streams) > 1 {
			// Let other streams' goroutines that are about to write
			// join this batch: one system call for many small frames
			// (a third less CPU for 64 streams of 1 KiB exchanges).
			// Not with a single stream: the yield would only delay its
			// frames, WINDOW_UPDATEs above all, and stall the sender.
			c.mu.Unlock()
			runtime.Gosched()
			c.mu.Lock()
		}
		buf := c.out
		c.out = nil
		if c.spaceCh != nil {
			close(c.spaceCh)
			c.spaceCh = nil
		}
		c.mu.Unlock()
		if len(buf) > 0 {
			var err error
			if c.bc != nil {
				// One write(2) for the whole batch of TLS records.
				c.bc.begin()
				_, err = c.nc.Write(buf)
				if ferr := c.bc.flush(); err == nil {
					err = ferr
				}
			} else {
				_, err = c.nc.Write(buf)
			}
			putOutBuf(buf)
			if err != nil {
				c.abort(fmt.Errorf("hbone: write to %s: %w", c.remote, err))
				return
			}
		} else if buf != nil {
			putOutBuf(buf)
		}
		c.mu.Lock()
		if c.closeAfterFlush && !c.writeClosed && len(c.out) == 0 {
			c.writeClosed = true
			reason := c.closeReason
			c.mu.Unlock()
			closeWrite(c.nc, c.raw)
			close(c.flushed)
			time.AfterFunc(linger, func() { c.abort(reason) })
			continue
		}
		c.mu.Unlock()
	}
}

// closeWrite sends TLS close_notify and a TCP FIN.
func closeWrite(nc, raw net.Conn) {
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	if cw, ok := raw.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// run is the connection's read loop; it returns when the connection ends.
func (c *conn) run() error {
	err := c.readLoop()
	var he *h2Error
	if errors.As(err, &he) {
		// Protocol error: fail the streams at once, say GOAWAY, then
		// drain the socket briefly so the peer reads the GOAWAY rather
		// than a TCP reset.
		c.mu.Lock()
		c.goAwayLocked(he.code, he.msg)
		c.failStreamsLocked(err)
		c.closeReason = err
		c.closeAfterFlush = true
		c.kickLocked()
		c.mu.Unlock()
		deadline := time.NewTimer(linger)
		select {
		case <-c.flushed:
		case <-c.done:
		case <-deadline.C:
		}
		deadline.Stop()
		c.nc.SetReadDeadline(time.Now().Add(linger))
		io.CopyN(io.Discard, c.nc, 1<<20)
	}
	c.abort(err)
	<-c.writerDone
	return err
}

func (c *conn) readLoop() error {
	first := true
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.streamError(se)
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				detail := "protocol error"
				if d := c.fr.ErrorDetail(); d != nil {
					detail = d.Error()
				}
				return connErr(http2.ErrCode(ce), "from %s: %s", c.remote, detail)
			}
			if errors.Is(err, http2.ErrFrameTooLarge) {
				return connErr(http2.ErrCodeFrameSize, "from %s: frame larger than %d bytes", c.remote, maxFrameSize)
			}
			c.mu.Lock()
			if c.writeClosed && c.closeReason != nil {
				err = c.closeReason // our graceful close ended it
			} else if errors.Is(err, io.EOF) {
				err = fmt.Errorf("hbone: %s closed the connection: %w", c.remote, err)
			} else {
				err = fmt.Errorf("hbone: read from %s: %w", c.remote, err)
			}
			c.mu.Unlock()
			return err
		}
		if first {
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				return connErr(http2.ErrCodeProtocol, "%s did not start with SETTINGS", c.remote)
			}
			first = false
			if c.server {
				c.nc.SetReadDeadline(time.Time{}) // set by the handshake
			}
		}
		if err := c.handle(f); err != nil {
			return err
		}
	}
}

func (c *conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.MetaHeadersFrame:
		return c.role.headers(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		return c.onReset(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.wfr.WritePing(true, f.Data)
		c.kickLocked()
		return c.backlogLocked()
	case *http2.GoAwayFrame:
		return c.onGoAway(f)
	case *http2.PushPromiseFrame:
		return connErr(http2.ErrCodeProtocol, "%s sent PUSH_PROMISE, push is disabled", c.remote)
	default: // PRIORITY, PRIORITY_UPDATE, unknown frame types: ignored
		return nil
	}
}

// idleStreamLocked reports whether id names a stream nobody opened yet;
// frames other than HEADERS on such a stream are a connection error.
func (c *conn) idleStreamLocked(id uint32) bool {
	if c.server {
		return id%2 == 0 || id > c.lastPeerID
	}
	return id%2 == 0 || id >= c.nextID
}

func (c *conn) streamError(se http2.StreamError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.streams[se.StreamID]; s != nil {
		c.resetLocked(s, se.Code, fmt.Errorf("%w: %v", ErrStreamReset, se))
		return
	}
	if c.server && se.StreamID%2 == 1 && se.StreamID > c.lastPeerID {
		c.lastPeerID = se.StreamID // a malformed request still uses its id
	}
	c.wfr.WriteRSTStream(se.StreamID, se.Code)
	c.kickLocked()
}

func (c *conn) onData(f *http2.DataFrame) error {
	n := int64(f.Length)
	data := f.Data()
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > c.recvWindow {
		return connErr(http2.ErrCodeFlowControl, "%s overran the connection window", c.remote)
	}
	c.recvWindow -= n
	s := c.streams[f.StreamID]
	if s == nil {
		if c.idleStreamLocked(f.StreamID) {
			return connErr(http2.ErrCodeProtocol, "%s sent DATA on idle stream %d", c.remote, f.StreamID)
		}
		c.creditLocked(nil, n) // a stream we already closed: return the window
		return nil
	}
	switch {
	case s.recvEOF:
		c.creditLocked(nil, n)
		c.resetLocked(s, http2.ErrCodeStreamClosed, fmt.Errorf("%w: DATA after END_STREAM", ErrStreamReset))
		return nil
	case n > s.recvWindow:
		c.creditLocked(nil, n)
		c.resetLocked(s, http2.ErrCodeFlowControl, fmt.Errorf("%w: peer overran the stream window", ErrStreamReset))
		return nil
	}
	s.recvWindow -= n
	if pad := n - int64(len(data)); pad > 0 {
		c.creditLocked(s, pad)
	}
	if s.readClosed {
		c.creditLocked(s, int64(len(data)))
	} else if len(data) > 0 {
		s.recv.write(data)
		wake(s.readWake)
	}
	if f.StreamEnded() {
		s.recvEOF = true
		wake(s.readWake)
		c.maybeDetachLocked(s)
	}
	return nil
}

// creditLocked returns n consumed bytes to the peer's send windows,
// batching WINDOW_UPDATEs at a quarter of each window. The connection's
// credit also goes back at once when its window runs low: otherwise data
// parked in streams nobody reads could hold the rest of the window below
// the batch size and stall the streams that are being read.
func (c *conn) creditLocked(s *Stream, n int64) {
	if n <= 0 {
		return
	}
	c.recvCredit += n
	if c.recvCredit >= connWindow/4 || c.recvWindow < connWindow/4 {
		c.wfr.WriteWindowUpdate(0, uint32(c.recvCredit))
		c.recvWindow += c.recvCredit
		c.recvCredit = 0
		c.kickLocked()
	}
	if s == nil || s.recvEOF || s.detached {
		return
	}
	s.recvCredit += n
	if s.recvCredit >= streamWindow/4 {
		c.wfr.WriteWindowUpdate(s.id, uint32(s.recvCredit))
		s.recvWindow += s.recvCredit
		s.recvCredit = 0
		c.kickLocked()
	}
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		if c.sendWindow+inc > maxWindow {
			return connErr(http2.ErrCodeFlowControl, "%s overflowed the connection send window", c.remote)
		}
		c.sendWindow += inc
		for _, s := range c.connWaiters {
			wake(s.writeWake)
		}
		clear(c.connWaiters)
		c.connWaiters = c.connWaiters[:0]
		return nil
	}
	s := c.streams[f.StreamID]
	if s == nil {
		if c.idleStreamLocked(f.StreamID) {
			return connErr(http2.ErrCodeProtocol, "%s sent WINDOW_UPDATE on idle stream %d", c.remote, f.StreamID)
		}
		return nil
	}
	if s.sendWindow+inc > maxWindow {
		c.resetLocked(s, http2.ErrCodeFlowControl, fmt.Errorf("%w: peer overflowed the stream send window", ErrStreamReset))
		return nil
	}
	s.sendWindow += inc
	wake(s.writeWake)
	return nil
}

func (c *conn) onReset(f *http2.RSTStreamFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.streams[f.StreamID]
	if s == nil {
		if c.idleStreamLocked(f.StreamID) {
			return connErr(http2.ErrCodeProtocol, "%s sent RST_STREAM on idle stream %d", c.remote, f.StreamID)
		}
		return nil
	}
	if c.server && !s.answered {
		// Rapid reset (CVE-2023-44487): streams cancelled before we
		// could answer cost a handler each. Answered streams pay back.
		c.earlyResets++
		if c.earlyResets > int(c.maxStreams)+rapidResetBudget {
			return connErr(http2.ErrCodeEnhanceYourCalm, "%s reset %d streams before they were answered", c.remote, c.earlyResets)
		}
	}
	var err error
	if f.ErrCode == http2.ErrCodeRefusedStream {
		err = &retryableError{fmt.Errorf("%w: refused by %s", ErrStreamReset, c.remote)}
	} else {
		err = fmt.Errorf("%w by %s (%v)", ErrStreamReset, c.remote, f.ErrCode)
	}
	if s.resetErr == nil {
		s.resetErr = err
	}
	c.endStreamLocked(s)
	return nil
}

// rapidResetBudget is how many more early resets than answered streams a
// peer may accumulate beyond the concurrent stream limit.
const rapidResetBudget = 100

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	newWindow := int64(-1)
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingHeaderTableSize:
			c.henc.SetMaxDynamicTableSizeLimit(s.Val)
		case http2.SettingMaxConcurrentStreams:
			c.peerMaxStreams = s.Val
		case http2.SettingInitialWindowSize:
			newWindow = int64(s.Val)
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame = s.Val
		case http2.SettingEnablePush:
			if !c.server && s.Val != 0 {
				return http2.ConnectionError(http2.ErrCodeProtocol)
			}
		}
		return nil
	})
	if err != nil {
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			return connErr(http2.ErrCode(ce), "%s sent an invalid setting", c.remote)
		}
		return err
	}
	if newWindow >= 0 {
		// Applied once per frame, however many times the frame repeats it.
		delta := newWindow - c.peerInitWindow
		c.peerInitWindow = newWindow
		for _, s := range c.streams {
			if s.sendWindow+delta > maxWindow {
				return connErr(http2.ErrCodeFlowControl, "%s overflowed a stream window with SETTINGS", c.remote)
			}
			s.sendWindow += delta
			wake(s.writeWake)
		}
	}
	c.wfr.WriteSettingsAck()
	c.kickLocked()
	return c.backlogLocked()
}

func (c *conn) onGoAway(f *http2.GoAwayFrame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.goAwayRecv = true
	if !c.server {
		for id, s := range c.streams {
			if id > f.LastStreamID && s.resetErr == nil {
				s.resetErr = &retryableError{fmt.Errorf("%w: %s is going away (GOAWAY %v) and did not process the stream", ErrStreamReset, c.remote, f.ErrCode)}
				c.endStreamLocked(s)
			}
		}
	}
	c.loadChangedLocked()
	return nil
}

// goAwayLocked queues GOAWAY once.
func (c *conn) goAwayLocked(code http2.ErrCode, debug string) {
	if c.goAwaySent || c.closed {
		return
	}
	c.goAwaySent = true
	var last uint32
	if c.server {
		last = c.lastPeerID
	}
	var dbg []byte
	if code != http2.ErrCodeNo {
		dbg = []byte(debug)
	}
	c.wfr.WriteGoAway(last, code, dbg)
	c.kickLocked()
}

// closeGracefullyLocked sends GOAWAY (if not yet), flushes, sends
// close_notify, and gives the peer linger to hang up.
func (c *conn) closeGracefullyLocked(reason error) {
	if c.closed || c.closeAfterFlush {
		return
	}
	c.goAwayLocked(http2.ErrCodeNo, "")
	c.closeReason = reason
	c.closeAfterFlush = true
	c.kickLocked()
}

// drainLocked stops new streams (GOAWAY) and closes once the open ones end.
func (c *conn) drainLocked() {
	c.goAwayLocked(http2.ErrCodeNo, "")
	c.loadChangedLocked()
}

// loadChangedLocked runs whenever streams, handlers or reservations
// change: it arms the idle timer or finishes a drain.
func (c *conn) loadChangedLocked() {
	if c.closed {
		return
	}
	if len(c.streams)+c.role.loadLocked() > 0 {
		c.idleSince = time.Time{}
		return
	}
	if c.goAwaySent || c.goAwayRecv {
		c.closeGracefullyLocked(fmt.Errorf("%w after GOAWAY", errDrained))
		return
	}
	if c.idleTimeout <= 0 || !c.idleSince.IsZero() {
		return
	}
	c.idleSince = time.Now()
	if c.idleTimer == nil {
		c.idleTimer = time.AfterFunc(c.idleTimeout, c.role.idle)
	} else {
		c.idleTimer.Reset(c.idleTimeout)
	}
}

// idleExpiredLocked reports whether the connection has been idle for the
// idle timeout, re-arming the timer when it is idle but not for long enough.
func (c *conn) idleExpiredLocked() bool {
	if c.closed || c.idleSince.IsZero() {
		return false
	}
	left := c.idleTimeout - time.Since(c.idleSince)
	if left > 0 {
		c.idleTimer.Reset(left)
		return false
	}
	return true
}

// resetLocked ends s with RST_STREAM(code) sent to the peer.
func (c *conn) resetLocked(s *Stream, code http2.ErrCode, err error) {
	if s.resetErr != nil {
		return
	}
	s.resetErr = err
	if !c.closed && !s.detached {
		c.wfr.WriteRSTStream(s.id, code)
		c.kickLocked()
	}
	c.endStreamLocked(s)
}

// endStreamLocked wakes everything waiting on a stream that just failed and
// detaches it.
func (c *conn) endStreamLocked(s *Stream) {
	wake(s.readWake)
	wake(s.writeWake)
	if s.cancel != nil {
		s.cancel()
	}
	if s.respCh != nil && !s.respDone {
		s.respDone = true
		close(s.respCh)
	}
	c.detachLocked(s)
}

// maybeDetachLocked detaches s once both directions ended.
func (c *conn) maybeDetachLocked(s *Stream) {
	if s.sentEnd && s.recvEOF {
		c.detachLocked(s)
	}
}

// detachLocked removes s from the connection: HTTP/2 considers it closed.
// Buffered data stays readable.
func (c *conn) detachLocked(s *Stream) {
	if s.detached {
		return
	}
	s.detached = true
	delete(c.streams, s.id)
	c.loadChangedLocked()
}

// failStreamsLocked fails every open stream with err (no frames sent).
func (c *conn) failStreamsLocked(err error) {
	for _, s := range c.streams {
		if s.resetErr == nil {
			s.resetErr = err
		}
		c.endStreamLocked(s)
	}
}

// abort closes the connection now: streams fail with err, the socket closes.
func (c *conn) abort(err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if err == nil {
		err = fmt.Errorf("hbone: connection to %s closed", c.remote)
	}
	c.closed = true
	c.failStreamsLocked(&retryableError{fmt.Errorf("%w (%w)", err, errConnDied)})
	c.err = err
	c.writeClosed = true
	if c.out != nil {
		putOutBuf(c.out)
		c.out = nil
	}
	if c.spaceCh != nil {
		close(c.spaceCh)
		c.spaceCh = nil
	}
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	close(c.done)
	raw := c.raw
	c.mu.Unlock()
	if raw != nil {
		raw.Close()
	}
	c.role.closed()
}

// writeHeadersLocked HPACK-encodes fields and queues HEADERS (plus
// CONTINUATION frames if the block exceeds the peer's frame size).
func (c *conn) writeHeadersLocked(id uint32, endStream bool, fields []hpack.HeaderField) {
	c.hbuf.Reset()
	for _, f := range fields {
		c.henc.WriteField(f)
	}
	block := c.hbuf.Bytes()
	max := int(c.peerMaxFrame)
	first := block
	if len(first) > max {
		first = first[:max]
	}
	block = block[len(first):]
	c.wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(block) == 0})
	for len(block) > 0 {
		frag := block
		if len(frag) > max {
			frag = frag[:max]
		}
		block = block[len(frag):]
		c.wfr.WriteContinuation(id, len(block) == 0, frag)
	}
	c.kickLocked()
}

// appendDataLocked queues one DATA frame, copying p once.
func (c *conn) appendDataLocked(id uint32, p []byte, end bool) {
	if c.writeClosed {
		return
	}
	if c.out == nil {
		c.out = getOutBuf()
	}
	var flags http2.Flags
	if end {
		flags = http2.FlagDataEndStream
	}
	n := len(p)
	c.out = append(c.out, byte(n>>16), byte(n>>8), byte(n), byte(http2.FrameData), byte(flags),
		byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
	c.out = append(c.out, p...)
	c.kickLocked()
}

// spaceLocked returns a channel closed when the writer takes the output.
func (c *conn) spaceLocked() <-chan struct{} {
	if c.spaceCh == nil {
		c.spaceCh = make(chan struct{})
	}
	return c.spaceCh
}

// newStreamLocked registers a stream with the windows in force.
func (c *conn) newStreamLocked(id uint32) *Stream {
	s := &Stream{
		c:          c,
		id:         id,
		sendWindow: c.peerInitWindow,
		recvWindow: streamWindow,
		readWake:   make(chan struct{}, 1),
		writeWake:  make(chan struct{}, 1),
	}
	c.streams[id] = s
	c.loadChangedLocked()
	return s
}

// retryableError marks failures that happened before the peer processed a
// stream (refused, above a GOAWAY, or a reused connection that died): the
// pool may retry the dial on another connection.
type retryableError struct{ err error }

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
