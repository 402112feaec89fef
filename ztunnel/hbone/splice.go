package hbone

import (
	"io"
	"sync"

	"golang.org/x/net/http2"
)

// Splice copies a→b and b→a at the same time until both directions have
// ended and returns the bytes copied each way. Half-close is propagated:
// when reading one side ends with io.EOF, the other side's write direction
// is closed (CloseWrite: END_STREAM on a Stream, FIN on a TCP connection)
// and the opposite direction carries on. An error in either direction
// aborts both — a Stream is reset, a TCP connection closed with SO_LINGER 0
// so its peer sees a reset too — and is returned. Both are closed when
// Splice returns. Copies use 256 KiB buffers (none for Stream sources,
// which write straight from their receive buffer).
func Splice(a, b io.ReadWriteCloser) (aToB, bToA int64, err error) {
	var once sync.Once
	fail := func(e error) {
		once.Do(func() {
			err = e
			abort(a)
			abort(b)
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		bToA = pipe(a, b, fail)
	}()
	aToB = pipe(b, a, fail)
	<-done
	a.Close()
	b.Close()
	return aToB, bToA, err
}

// pipe copies src to dst and closes dst's write side at src's EOF.
func pipe(dst, src io.ReadWriteCloser, fail func(error)) int64 {
	n, err := copyData(dst, src)
	if err != nil {
		fail(err)
		return n
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		// An error here means dst is already broken; the other
		// direction reports it.
		cw.CloseWrite()
	} else {
		dst.Close()
	}
	return n
}

func copyData(dst io.Writer, src io.Reader) (int64, error) {
	if s, ok := src.(*Stream); ok {
		return s.WriteTo(dst)
	}
	bp := splicePool.Get().(*[]byte)
	defer splicePool.Put(bp)
	buf := *bp
	var n int64
	for {
		nr, er := src.Read(buf)
		if nr > 0 {
			nw, ew := dst.Write(buf[:nr])
			n += int64(nw)
			if ew != nil {
				return n, ew
			}
		}
		if er == io.EOF {
			return n, nil
		}
		if er != nil {
			return n, er
		}
	}
}

// abort closes c so that its peer sees a failure, not an orderly end.
func abort(c io.Closer) {
	switch x := c.(type) {
	case *Stream:
		x.c.mu.Lock()
		x.c.resetLocked(x, http2.ErrCodeCancel, x.opError("splice", errSpliceAborted))
		x.c.mu.Unlock()
	case interface{ SetLinger(int) error }:
		x.SetLinger(0)
	}
	c.Close()
}

var errSpliceAborted = errorString("aborted: the other direction failed")

type errorString string

func (e errorString) Error() string { return string(e) }
