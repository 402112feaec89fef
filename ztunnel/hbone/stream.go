package hbone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/net/http2"
)

// ErrStreamReset is wrapped by errors of streams the peer (or a protocol
// violation) reset.
var ErrStreamReset = errors.New("hbone: stream reset")

// Stream is one established HBONE tunnel (an HTTP/2 CONNECT stream). It is
// a net.Conn whose two directions end separately:
//
//   - CloseWrite sends END_STREAM: the peer reads io.EOF and may keep
//     writing (TCP half-close).
//   - Read returns io.EOF after the peer's END_STREAM; Write still works.
//   - CloseRead discards what arrives from then on (the peer is not told).
//   - Close ends the stream: gracefully (END_STREAM) if the peer has
//     already finished sending, otherwise abortively (RST_STREAM CANCEL,
//     which the peer reads as an error once it has read the data before
//     it). For a graceful end call CloseWrite, read to io.EOF, then Close.
//
// Read and Write may be called concurrently with each other; deadlines
// behave as for net.Conn and Close unblocks both.
type Stream struct {
	c  *conn
	id uint32

	// Guarded by c.mu.
	sendWindow int64
	recvWindow int64
	recvCredit int64
	recv       recvBuf
	recvEOF    bool // END_STREAM received
	sentEnd    bool // END_STREAM sent
	readClosed bool
	closed     bool
	detached   bool // no longer an open HTTP/2 stream
	connWait   bool // in c.connWaiters
	peeking    bool // WriteTo is writing from the buffer: Close must not free it
	answered   bool // server: response HEADERS sent
	resetErr   error
	cancel     context.CancelFunc // server: the request context
	respCh     chan struct{}      // client: closed once the response arrived or the stream failed
	respDone   bool
	status     int

	readWake, writeWake chan struct{} // cap 1
	rdl, wdl            deadline
}

var _ net.Conn = (*Stream)(nil)

// Read reads tunnel data; io.EOF after the peer's END_STREAM.
func (s *Stream) Read(p []byte) (int, error) {
	c := s.c
	c.mu.Lock()
	for {
		switch {
		case s.closed || s.readClosed:
			c.mu.Unlock()
			return 0, s.opError("read", net.ErrClosed)
		case s.recv.len() > 0:
			if len(p) == 0 {
				c.mu.Unlock()
				return 0, nil
			}
			n := s.recv.read(p)
			c.creditLocked(s, int64(n))
			c.mu.Unlock()
			return n, nil
		case s.recvEOF:
			c.mu.Unlock()
			return 0, io.EOF
		case s.resetErr != nil:
			err := s.resetErr
			c.mu.Unlock()
			return 0, err
		case len(p) == 0:
			c.mu.Unlock()
			return 0, nil
		}
		dl := s.rdl.wait()
		if dl != nil && isClosed(dl) {
			c.mu.Unlock()
			return 0, s.opError("read", os.ErrDeadlineExceeded)
		}
		c.mu.Unlock()
		select {
		case <-s.readWake:
		case <-dl:
		}
		c.mu.Lock()
	}
}

// WriteTo writes the tunnel's data to w until the peer's END_STREAM
// (returning nil) or an error, straight from the receive buffer: no copy,
// and one writev(2) for everything buffered when w is a TCP connection.
// io.Copy and Splice use it.
func (s *Stream) WriteTo(w io.Writer) (int64, error) {
	c := s.c
	var total int64
	var vec [][]byte
	c.mu.Lock()
	for {
		switch {
		case s.closed || s.readClosed:
			c.mu.Unlock()
			return total, s.opError("read", net.ErrClosed)
		case s.recv.len() > 0:
			// peeking keeps Close from freeing the chunks while the
			// lock is released for the write.
			vec = s.recv.peek(vec[:0])
			s.peeking = true
			c.mu.Unlock()
			var n int64
			var err error
			if len(vec) == 1 {
				var m int
				m, err = w.Write(vec[0])
				n = int64(m)
			} else {
				bufs := net.Buffers(vec)
				n, err = bufs.WriteTo(w)
			}
			clear(vec)
			c.mu.Lock()
			s.peeking = false
			if s.closed || s.readClosed {
				c.creditLocked(s, int64(s.recv.reset()))
				continue
			}
			s.recv.discard(int(n))
			c.creditLocked(s, n)
			total += n
			if err != nil {
				c.mu.Unlock()
				return total, err
			}
			continue
		case s.recvEOF:
			c.mu.Unlock()
			return total, nil
		case s.resetErr != nil:
			err := s.resetErr
			c.mu.Unlock()
			return total, err
		}
		dl := s.rdl.wait()
		if dl != nil && isClosed(dl) {
			c.mu.Unlock()
			return total, s.opError("read", os.ErrDeadlineExceeded)
		}
		c.mu.Unlock()
		select {
		case <-s.readWake:
		case <-dl:
		}
		c.mu.Lock()
	}
}

// writeErrLocked says why the stream cannot be written, or nil.
func (s *Stream) writeErrLocked() error {
	switch {
	case s.closed:
		return s.opError("write", net.ErrClosed)
	case s.sentEnd:
		return s.opError("write", errors.New("hbone: write after CloseWrite"))
	case s.resetErr != nil:
		return s.resetErr
	case s.c.closed:
		return s.c.err
	case s.c.writeClosed:
		return s.opError("write", errors.New("hbone: connection is closing"))
	}
	return nil
}

// Write sends p as DATA frames, waiting for flow-control window.
func (s *Stream) Write(p []byte) (int, error) {
	c := s.c
	var n int
	c.mu.Lock()
	defer c.mu.Unlock()
	for n < len(p) {
		if err := s.writeErrLocked(); err != nil {
			return n, err
		}
		dl := s.wdl.wait()
		if dl != nil && isClosed(dl) {
			return n, s.opError("write", os.ErrDeadlineExceeded)
		}
		var wait <-chan struct{}
		switch {
		case len(c.out) >= outLimit:
			wait = c.spaceLocked()
		case s.sendWindow <= 0:
			wait = s.writeWake
		case c.sendWindow <= 0:
			if !s.connWait {
				s.connWait = true
				c.connWaiters = append(c.connWaiters, s)
			}
			wait = s.writeWake
		}
		if wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
			case <-s.writeWake:
			case <-dl:
			}
			c.mu.Lock()
			s.connWait = false
			continue
		}
		m := min(int64(len(p)-n), s.sendWindow, c.sendWindow, int64(c.peerMaxFrame), maxFrameSize)
		c.appendDataLocked(s.id, p[n:n+int(m)], false)
		s.sendWindow -= m
		c.sendWindow -= m
		n += int(m)
	}
	return n, nil
}

// CloseWrite sends END_STREAM after the data written so far: the peer reads
// io.EOF. Reading continues to work.
func (s *Stream) CloseWrite() error {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.sentEnd {
		return nil
	}
	if err := s.writeErrLocked(); err != nil {
		return err
	}
	s.sentEnd = true
	c.appendDataLocked(s.id, nil, true)
	c.maybeDetachLocked(s)
	return nil
}

// CloseRead stops reading: buffered and later data is discarded (and its
// flow-control window returned, so the peer is never blocked by it).
func (s *Stream) CloseRead() error {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.readClosed {
		return nil
	}
	s.readClosed = true
	if !s.peeking {
		c.creditLocked(s, int64(s.recv.reset()))
	}
	wake(s.readWake)
	return nil
}

// Close ends the stream (see the type's documentation) and releases its
// buffers. Blocked Reads and Writes return.
func (s *Stream) Close() error {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed, s.readClosed = true, true
	if !s.peeking {
		c.creditLocked(nil, int64(s.recv.reset()))
	}
	if s.resetErr == nil && !s.detached && !c.closed {
		if s.recvEOF {
			if !s.sentEnd {
				s.sentEnd = true
				c.appendDataLocked(s.id, nil, true)
			}
			c.maybeDetachLocked(s)
		} else {
			c.resetLocked(s, http2.ErrCodeCancel, s.opError("read", net.ErrClosed))
		}
	}
	if s.cancel != nil {
		s.cancel()
	}
	wake(s.readWake)
	wake(s.writeWake)
	s.rdl.stop()
	s.wdl.stop()
	return nil
}

// Peer is the verified SPIFFE ID at the other end of the connection.
func (s *Stream) Peer() spiffeid.ID { return s.c.peer }

// LocalAddr is the local address of the underlying connection.
func (s *Stream) LocalAddr() net.Addr { return s.c.raw.LocalAddr() }

// RemoteAddr is the peer's address of the underlying connection (the HBONE
// peer, not the tunnel's final destination).
func (s *Stream) RemoteAddr() net.Addr { return s.c.raw.RemoteAddr() }

// SetDeadline sets both deadlines.
func (s *Stream) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

// SetReadDeadline bounds blocked and future Reads.
func (s *Stream) SetReadDeadline(t time.Time) error {
	s.rdl.set(t)
	wake(s.readWake)
	return nil
}

// SetWriteDeadline bounds blocked and future Writes.
func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.wdl.set(t)
	wake(s.writeWake)
	return nil
}

func (s *Stream) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "hbone", Source: s.c.raw.LocalAddr(), Addr: s.c.raw.RemoteAddr(),
		Err: &streamError{id: s.id, err: err}}
}

// streamError names the stream and keeps net.Error's Timeout working.
type streamError struct {
	id  uint32
	err error
}

func (e *streamError) Error() string { return fmt.Sprintf("stream %d: %v", e.id, e.err) }
func (e *streamError) Unwrap() error { return e.err }
func (e *streamError) Timeout() bool { return errors.Is(e.err, os.ErrDeadlineExceeded) }
