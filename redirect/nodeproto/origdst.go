package nodeproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNoOrigDst reports a connection for which capture recorded nothing.
var ErrNoOrigDst = errors.New("nodeproto: no original destination recorded")

// Layout of the agent's original-destination map (redirect/bpf wr_odst),
// version 1: key {u64 netns cookie; u8 addr[16]; u32 port; u32 pad},
// value {u8 addr[16]; u16 port; u16 family; u32 pad}, native byte order
// except the addresses, IPv4 as ::ffff:a.b.c.d.
const (
	odstKeySize   = 32
	odstValueSize = 24
	afInet        = 2
)

// The bpf_attr above uses unsafe.Pointer for 64-bit fields: refuse to
// build where pointers are not 64 bits wide.
var _ [unsafe.Sizeof(uintptr(0)) - 8]byte

// OrigDstTable looks up where a captured connection was going, from the
// read-only map the agent sends in hello. Safe for concurrent use.
type OrigDstTable struct {
	mu sync.RWMutex // Close waits for lookups in flight
	f  *os.File
}

// NewOrigDstTable wraps a descriptor of the map (for tests and tools).
func NewOrigDstTable(f *os.File) *OrigDstTable { return &OrigDstTable{f: f} }

// Close closes the map handle; later lookups fail with os.ErrClosed.
func (t *OrigDstTable) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.f == nil {
		return nil
	}
	err := t.f.Close()
	t.f = nil
	return err
}

// Lookup returns the original destination of the connection ztunnel
// accepted on a pod's outbound listener: netnsCookie is the pod's
// (Pod.NetnsCookie), client the accepted socket's remote address.
func (t *OrigDstTable) Lookup(netnsCookie uint64, client netip.AddrPort) (netip.AddrPort, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.f == nil {
		return netip.AddrPort{}, fmt.Errorf("nodeproto: original destination table: %w", os.ErrClosed)
	}
	var key [odstKeySize]byte
	var val [odstValueSize]byte
	binary.NativeEndian.PutUint64(key[0:8], netnsCookie)
	a := client.Addr().As16()
	copy(key[8:24], a[:])
	binary.NativeEndian.PutUint32(key[24:28], uint32(client.Port()))
	// union bpf_attr for BPF_MAP_LOOKUP_ELEM; pointers are 64-bit fields
	// (this package builds for 64-bit platforms only, see below).
	attr := struct {
		mapFD uint32
		_     uint32
		key   unsafe.Pointer
		value unsafe.Pointer
		flags uint64
	}{
		mapFD: uint32(t.f.Fd()),
		key:   unsafe.Pointer(&key[0]),
		value: unsafe.Pointer(&val[0]),
	}
	const bpfMapLookupElem = 1
	_, _, errno := unix.Syscall(unix.SYS_BPF, bpfMapLookupElem, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(&key)
	runtime.KeepAlive(&val)
	runtime.KeepAlive(t.f)
	if errno == unix.ENOENT {
		return netip.AddrPort{}, fmt.Errorf("%w for %v", ErrNoOrigDst, client)
	}
	if errno != 0 {
		return netip.AddrPort{}, fmt.Errorf("nodeproto: original destination of %v: %w", client, errno)
	}
	var b16 [16]byte
	copy(b16[:], val[0:16])
	addr := netip.AddrFrom16(b16)
	if binary.NativeEndian.Uint16(val[18:20]) == afInet {
		addr = addr.Unmap()
	}
	return netip.AddrPortFrom(addr, binary.NativeEndian.Uint16(val[16:18])), nil
}
