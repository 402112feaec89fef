package nodeproto

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// Version is the protocol version this package speaks.
const Version = 1

// DefaultSocket is where the node agent listens by default.
const DefaultSocket = "/var/run/warren/ztunnel.sock"

// maxMessage bounds one datagram; maxFDs bounds the descriptors beside it.
const (
	maxMessage = 64 << 10
	maxFDs     = 8
)

// Message types.
const (
	typeHello        = "hello"
	typeAdd          = "add"
	typeRemove       = "remove"
	typeSnapshotDone = "snapshot_done"
	typeAck          = "ack"
)

// Descriptor roles in message.FDs.
const (
	fdOrigDst = "origdst"
	fdNetns   = "netns"
	fdInbound = "inbound"
)

// Pod is what ztunnel learns about an enrolled pod.
type Pod struct {
	UID       string       `json:"uid"`
	Namespace string       `json:"namespace"`
	Name      string       `json:"name"`
	IPs       []netip.Addr `json:"ips,omitempty"`
	// NetnsCookie is the kernel's cookie of the pod's network namespace:
	// the key of original-destination lookups (see OrigDstTable).
	NetnsCookie uint64 `json:"netnsCookie"`
}

// Validate checks the fields ztunnel relies on.
func (p Pod) Validate() error {
	if p.UID == "" {
		return errors.New("nodeproto: pod without uid")
	}
	if p.Namespace == "" || p.Name == "" {
		return fmt.Errorf("nodeproto: pod %s without namespace/name", p.UID)
	}
	return nil
}

type message struct {
	Type    string   `json:"type"`
	Version int      `json:"version,omitempty"`
	ID      uint64   `json:"id,omitempty"`
	Node    string   `json:"node,omitempty"`
	Pod     *Pod     `json:"pod,omitempty"`
	UID     string   `json:"uid,omitempty"`
	Error   string   `json:"error,omitempty"`
	FDs     []string `json:"fds,omitempty"`
}

// conn frames messages with descriptors on a SOCK_SEQPACKET socket.
type conn struct {
	uc *net.UnixConn
}

func (c conn) send(m message, files ...*os.File) error {
	if len(files) != len(m.FDs) {
		return fmt.Errorf("nodeproto: %d descriptors for %d roles", len(files), len(m.FDs))
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("nodeproto: %w", err)
	}
	if len(b) > maxMessage {
		return fmt.Errorf("nodeproto: message of %d bytes exceeds %d", len(b), maxMessage)
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, 0, len(files))
		defer func() {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}()
		for _, f := range files {
			fd, err := dupFd(f)
			if err != nil {
				return fmt.Errorf("nodeproto: send %s: %w", m.Type, err)
			}
			fds = append(fds, fd)
		}
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := c.uc.WriteMsgUnix(b, oob, nil); err != nil {
		return fmt.Errorf("nodeproto: send %s: %w", m.Type, err)
	}
	return nil
}

// dupFd duplicates f's descriptor without touching its blocking mode
// (os.File.Fd would switch a shared socket to blocking).
func dupFd(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	cerr := rc.Control(func(fd uintptr) {
		nfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil {
		return -1, cerr
	}
	return nfd, err
}

// recv reads one message and the descriptors beside it, as files named by
// their roles. The caller owns the files.
func (c conn) recv() (message, []*os.File, error) {
	b := make([]byte, maxMessage+1)
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	n, oobn, flags, _, err := c.uc.ReadMsgUnix(b, oob)
	if err != nil {
		return message{}, nil, err
	}
	var fds []int
	if oobn > 0 {
		cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return message{}, nil, fmt.Errorf("nodeproto: control message: %w", err)
		}
		for i := range cmsgs {
			got, err := unix.ParseUnixRights(&cmsgs[i])
			if err == nil {
				fds = append(fds, got...)
			}
		}
	}
	fail := func(err error) (message, []*os.File, error) {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return message{}, nil, err
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || n > maxMessage {
		return fail(errors.New("nodeproto: message or descriptors truncated"))
	}
	if n == 0 {
		return fail(io.EOF)
	}
	var m message
	if err := json.Unmarshal(b[:n], &m); err != nil {
		return fail(fmt.Errorf("nodeproto: decode: %w", err))
	}
	if len(fds) != len(m.FDs) {
		return fail(fmt.Errorf("nodeproto: %s carries %d descriptors for %d roles", m.Type, len(fds), len(m.FDs)))
	}
	files := make([]*os.File, len(fds))
	for i, fd := range fds {
		files[i] = os.NewFile(uintptr(fd), m.FDs[i])
	}
	return m, files, nil
}

// take returns the file with role, or nil.
func take(m message, files []*os.File, role string) *os.File {
	for i, r := range m.FDs {
		if r == role {
			return files[i]
		}
	}
	return nil
}
