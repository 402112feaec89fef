package nodeproto

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"
)

// Handler is ztunnel's side of the protocol.
type Handler interface {
	// AddPod starts serving pod. netns is the pod's network namespace; the
	// handler owns it (and must close it when the pod goes). It returns
	// the pod's inbound plaintext listeners (15006, TCP, not MPTCP: one
	// dual-stack or one per family) opened in netns; the client sends them
	// to the agent and closes the returned files, not the listeners.
	// Adding a pod already served must succeed and return its listeners.
	AddPod(ctx context.Context, pod Pod, netns *os.File) ([]*os.File, error)
	// RemovePod stops serving a pod; an unknown uid is not an error.
	RemovePod(ctx context.Context, uid string) error
	// SnapshotDone ends the snapshot after a (re)connect: uids are all the
	// pods the agent enrols; the handler drops the others.
	SnapshotDone(ctx context.Context, uids []string) error
}

// ServerInfo is what the agent says in hello.
type ServerInfo struct {
	Version int
	Node    string
	// OrigDst looks up original destinations; nil if the agent sent none.
	OrigDst *OrigDstTable
}

// Client is ztunnel's end of one connection.
type Client struct {
	c    conn
	Info ServerInfo
}

// Dial connects to the agent at path and exchanges hello.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unixpacket", path)
	if err != nil {
		return nil, fmt.Errorf("nodeproto: dial %s: %w", path, err)
	}
	uc := nc.(*net.UnixConn)
	cl := &Client{c: conn{uc}}
	if dl, ok := ctx.Deadline(); ok {
		uc.SetDeadline(dl)
	} else {
		uc.SetDeadline(time.Now().Add(helloTimeout))
	}
	m, files, err := cl.c.recv()
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("nodeproto: hello: %w", err)
	}
	if m.Type != typeHello {
		closeFiles(files)
		uc.Close()
		return nil, fmt.Errorf("nodeproto: expected hello, got %q", m.Type)
	}
	if m.Version != Version {
		closeFiles(files)
		cl.c.send(message{Type: typeHello, Error: fmt.Sprintf("unsupported version %d (speak %d)", m.Version, Version)})
		uc.Close()
		return nil, fmt.Errorf("nodeproto: agent speaks version %d, want %d", m.Version, Version)
	}
	cl.Info = ServerInfo{Version: m.Version, Node: m.Node}
	if f := take(m, files, fdOrigDst); f != nil {
		cl.Info.OrigDst = &OrigDstTable{f: f}
	}
	if err := cl.c.send(message{Type: typeHello, Version: Version}); err != nil {
		cl.Close()
		return nil, err
	}
	uc.SetDeadline(time.Time{})
	return cl, nil
}

// Close closes the connection and the original-destination handle.
func (cl *Client) Close() error {
	if cl.Info.OrigDst != nil {
		cl.Info.OrigDst.Close()
	}
	return cl.c.uc.Close()
}

// Serve handles the agent's requests until the connection or ctx ends. It
// returns the reason (never nil).
func (cl *Client) Serve(ctx context.Context, h Handler) error {
	stop := context.AfterFunc(ctx, func() { cl.c.uc.Close() })
	defer stop()
	var snapshot []string
	inSnapshot := true
	for {
		m, files, err := cl.c.recv()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("nodeproto: read: %w", err)
		}
		ack := message{Type: typeAck, ID: m.ID}
		var send []*os.File
		switch m.Type {
		case typeAdd:
			netns := take(m, files, fdNetns)
			if m.Pod == nil || netns == nil {
				closeFiles(files)
				ack.Error = "add without pod or netns"
				break
			}
			if err := m.Pod.Validate(); err != nil {
				closeFiles(files)
				ack.Error = err.Error()
				break
			}
			ls, err := h.AddPod(ctx, *m.Pod, netns)
			if err != nil {
				ack.Error = err.Error()
				closeFiles(ls)
				break
			}
			send = ls
			for range ls {
				ack.FDs = append(ack.FDs, fdInbound)
			}
			if inSnapshot {
				snapshot = append(snapshot, m.Pod.UID)
			}
		case typeRemove:
			closeFiles(files)
			if err := h.RemovePod(ctx, m.UID); err != nil {
				ack.Error = err.Error()
			}
		case typeSnapshotDone:
			closeFiles(files)
			if err := h.SnapshotDone(ctx, snapshot); err != nil {
				ack.Error = err.Error()
			}
			snapshot, inSnapshot = nil, false
		default:
			closeFiles(files)
			ack.Error = fmt.Sprintf("unknown message type %q", m.Type)
		}
		err = cl.c.send(ack, send...)
		closeFiles(send)
		if err != nil {
			return err
		}
	}
}

// Run dials the agent, serves h, and reconnects (after retry, default 1s)
// until ctx ends. onConnect, if set, sees every new connection's
// ServerInfo. Its OrigDst stays open after that connection ends (ztunnel
// keeps routing captured connections while the agent restarts) until the
// next connection's replaces it or Run returns.
func Run(ctx context.Context, path string, h Handler, retry time.Duration, onConnect func(ServerInfo)) error {
	if retry <= 0 {
		retry = time.Second
	}
	var prev *OrigDstTable
	defer func() {
		if prev != nil {
			prev.Close()
		}
	}()
	for {
		if cl, err := Dial(ctx, path); err == nil {
			info := cl.Info
			cl.Info.OrigDst = nil // Run owns it from here
			if onConnect != nil {
				onConnect(info)
			}
			if prev != nil {
				prev.Close()
			}
			prev = info.OrigDst
			cl.Serve(ctx, h)
			cl.Close()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
