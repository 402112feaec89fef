package hbone

import "sync"

// Buffers. Receive data sits in fixed-size chunks from a pool, so an idle
// stream holds no buffer at all and a busy one holds at most its flow-control
// window. Output batches and splice buffers are pooled the same way.

const (
	chunkSize  = 32 << 10  // receive buffer chunk
	spliceBuf  = 256 << 10 // Splice copy buffer per direction
	outBufSize = outLimit + maxFrameSize + 16<<10
)

var (
	chunkPool  = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize); return &b }}
	outPool    = sync.Pool{New: func() any { b := make([]byte, 0, outBufSize); return &b }}
	splicePool = sync.Pool{New: func() any { b := make([]byte, spliceBuf); return &b }}
)

func getOutBuf() []byte { return (*outPool.Get().(*[]byte))[:0] }

func putOutBuf(b []byte) {
	if cap(b) == outBufSize {
		b = b[:0]
		outPool.Put(&b)
	}
}

// recvBuf is a FIFO byte queue made of pooled chunks.
type recvBuf struct {
	chunks [][]byte // data is chunks[0][off:] ... chunks[n-1][:]
	off    int
	n      int // bytes queued
}

func (b *recvBuf) len() int { return b.n }

// write appends p.
func (b *recvBuf) write(p []byte) {
	b.n += len(p)
	for len(p) > 0 {
		if k := len(b.chunks); k == 0 || len(b.chunks[k-1]) == cap(b.chunks[k-1]) {
			b.chunks = append(b.chunks, (*chunkPool.Get().(*[]byte))[:0])
		}
		last := &b.chunks[len(b.chunks)-1]
		m := copy((*last)[len(*last):cap(*last)], p)
		*last = (*last)[:len(*last)+m]
		p = p[m:]
	}
}

// read moves up to len(p) bytes into p.
func (b *recvBuf) read(p []byte) int {
	n := 0
	for n < len(p) && b.n > 0 {
		c := b.chunks[0]
		m := copy(p[n:], c[b.off:])
		n += m
		b.off += m
		b.n -= m
		if b.off == len(c) {
			b.dropFirst()
		}
	}
	return n
}

// peek appends the queued bytes to dst as one slice per chunk, for writing
// them out without an intermediate copy. The slices stay valid until
// discard or reset: later writes only fill space after them.
func (b *recvBuf) peek(dst [][]byte) [][]byte {
	for i, c := range b.chunks {
		if i == 0 {
			c = c[b.off:]
		}
		dst = append(dst, c)
	}
	return dst
}

// discard drops n queued bytes from the front.
func (b *recvBuf) discard(n int) {
	b.n -= n
	for n > 0 {
		m := min(n, len(b.chunks[0])-b.off)
		b.off += m
		n -= m
		if b.off == len(b.chunks[0]) {
			b.dropFirst()
		}
	}
}

func (b *recvBuf) dropFirst() {
	c := b.chunks[0][:0]
	chunkPool.Put(&c)
	b.chunks[0] = nil
	b.chunks = b.chunks[1:]
	b.off = 0
	if len(b.chunks) == 0 {
		b.chunks = nil
	}
}

// reset drops everything and returns the number of bytes dropped.
func (b *recvBuf) reset() int {
	n := b.n
	for len(b.chunks) > 0 {
		b.dropFirst()
	}
	b.n = 0
	return n
}
