package hbone

import (
	"bufio"
	"net"
	"sync"
)

// batchConn sits under the TLS connection and cuts system calls, which
// dominate HBONE's cost on loopback and in VMs:
//
//   - crypto/tls writes every 16 KiB record with a write(2) of its own.
//     While the connection's writer goroutine hands TLS a batch of frames
//     (begin … flush), the records are gathered and sent with one call.
//     Writes TLS makes at other times (handshake, alerts, key updates)
//     pass straight through, in order.
//   - Reads go through a buffer, so one read(2) fetches many records.
type batchConn struct {
	net.Conn
	br *bufio.Reader

	mu       sync.Mutex
	batching bool
	wbuf     []byte
}

const rawReadBuf = 64 << 10

func newBatchConn(c net.Conn) *batchConn {
	return &batchConn{Conn: c, br: bufio.NewReaderSize(c, rawReadBuf)}
}

func (b *batchConn) Read(p []byte) (int, error) { return b.br.Read(p) }

func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.batching {
		b.wbuf = append(b.wbuf, p...)
		return len(p), nil
	}
	return b.Conn.Write(p)
}

// begin starts gathering writes.
func (b *batchConn) begin() {
	b.mu.Lock()
	b.batching = true
	if b.wbuf == nil {
		b.wbuf = (*batchPool.Get().(*[]byte))[:0]
	}
	b.mu.Unlock()
}

// flush sends what was gathered with one write and stops gathering.
func (b *batchConn) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.batching = false
	buf := b.wbuf
	b.wbuf = nil
	_, err := b.Conn.Write(buf)
	if cap(buf) == batchBufSize {
		buf = buf[:0]
		batchPool.Put(&buf)
	}
	return err
}

// CloseWrite half-closes the transport (TCP FIN) if it can.
func (b *batchConn) CloseWrite() error {
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// A batch is one output batch of frames (outBufSize) plus TLS record
// overhead (at most 22 bytes per 16 KiB record).
const batchBufSize = outBufSize + outBufSize/512 + 4096

var batchPool = sync.Pool{New: func() any { b := make([]byte, 0, batchBufSize); return &b }}
