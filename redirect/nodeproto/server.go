package nodeproto

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotConnected is returned by Server requests while no ztunnel is
// connected, or while a new connection still receives its snapshot.
var ErrNotConnected = errors.New("nodeproto: ztunnel not connected")

// helloTimeout bounds the version exchange of a new connection.
const helloTimeout = 10 * time.Second

// ServerOptions configures the agent's side.
type ServerOptions struct {
	// Path of the unix socket. Default DefaultSocket.
	Path string
	// Node is the node name sent in hello.
	Node string
	// OrigDst, if set, returns a read-only handle on the original
	// destination map; it travels with hello. The Server closes it.
	OrigDst func() (*os.File, error)
	// OnConnect runs for every new ztunnel connection once hello is
	// exchanged. It must send the snapshot: Conn.AddPod for every enrolled
	// pod, then Conn.SnapshotDone. Server requests fail with
	// ErrNotConnected until it returns; an error closes the connection.
	OnConnect func(ctx context.Context, c *Conn) error
	// OnDisconnect, if set, runs when a connection that finished its
	// snapshot goes away.
	OnDisconnect func(c *Conn)
}

// Server is the node agent's end: it listens, serves one ztunnel at a
// time (a newer connection replaces an older one) and sends it requests.
type Server struct {
	opts ServerOptions
	ln   *net.UnixListener

	mu     sync.Mutex
	active *Conn
	conns  map[*Conn]struct{}
	closed bool
}

// Listen creates the socket (replacing a stale one) with mode 0600.
func Listen(opts ServerOptions) (*Server, error) {
	if opts.Path == "" {
		opts.Path = DefaultSocket
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o755); err != nil {
		return nil, fmt.Errorf("nodeproto: %w", err)
	}
	if st, err := os.Lstat(opts.Path); err == nil && st.Mode()&os.ModeSocket != 0 {
		os.Remove(opts.Path)
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: opts.Path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("nodeproto: listen %s: %w", opts.Path, err)
	}
	if err := os.Chmod(opts.Path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("nodeproto: %w", err)
	}
	return &Server{opts: opts, ln: ln, conns: map[*Conn]struct{}{}}, nil
}

// Path returns the socket path.
func (s *Server) Path() string { return s.opts.Path }

// Serve accepts connections until ctx ends or Close is called.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	for {
		uc, err := s.ln.AcceptUnix()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("nodeproto: accept: %w", err)
		}
		go s.handle(ctx, uc)
	}
}

func (s *Server) handle(ctx context.Context, uc *net.UnixConn) {
	c := &Conn{c: conn{uc}, pending: map[uint64]chan reply{}, done: make(chan struct{})}
	c.pid = peerPID(uc)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		uc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		c.close(errors.New("nodeproto: connection closed"))
		s.mu.Lock()
		delete(s.conns, c)
		wasActive := s.active == c
		if wasActive {
			s.active = nil
		}
		s.mu.Unlock()
		if wasActive && s.opts.OnDisconnect != nil {
			s.opts.OnDisconnect(c)
		}
	}()
	if err := s.hello(c); err != nil {
		return
	}
	go c.readLoop()
	if s.opts.OnConnect != nil {
		if err := s.opts.OnConnect(ctx, c); err != nil {
			return
		}
	}
	s.mu.Lock()
	old := s.active
	s.active = c
	s.mu.Unlock()
	if old != nil {
		old.close(errors.New("nodeproto: replaced by a newer ztunnel connection"))
	}
	select {
	case <-c.done:
	case <-ctx.Done():
	}
}

func (s *Server) hello(c *Conn) error {
	c.c.uc.SetDeadline(time.Now().Add(helloTimeout))
	defer c.c.uc.SetDeadline(time.Time{})
	m := message{Type: typeHello, Version: Version, Node: s.opts.Node}
	var files []*os.File
	if s.opts.OrigDst != nil {
		f, err := s.opts.OrigDst()
		if err != nil {
			return err
		}
		if f != nil {
			defer f.Close()
			m.FDs, files = []string{fdOrigDst}, []*os.File{f}
		}
	}
	if err := c.c.send(m, files...); err != nil {
		return err
	}
	r, rf, err := c.c.recv()
	closeFiles(rf)
	if err != nil {
		return err
	}
	if r.Type != typeHello || r.Error != "" {
		return fmt.Errorf("nodeproto: ztunnel refused hello: %s", r.Error)
	}
	if r.Version != Version {
		return fmt.Errorf("nodeproto: ztunnel speaks version %d, want %d", r.Version, Version)
	}
	return nil
}

func peerPID(uc *net.UnixConn) int {
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0
	}
	pid := 0
	rc.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}

// Connected reports whether a ztunnel is connected and has its snapshot.
func (s *Server) Connected() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active != nil
}

// Active returns the connection that serves requests, or nil.
func (s *Server) Active() *Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// AddPod hands a pod to the connected ztunnel (see Conn.AddPod).
func (s *Server) AddPod(ctx context.Context, pod Pod, netns *os.File) ([]*os.File, error) {
	c := s.Active()
	if c == nil {
		return nil, ErrNotConnected
	}
	return c.AddPod(ctx, pod, netns)
}

// RemovePod tells the connected ztunnel to stop serving a pod.
func (s *Server) RemovePod(ctx context.Context, uid string) error {
	c := s.Active()
	if c == nil {
		return ErrNotConnected
	}
	return c.RemovePod(ctx, uid)
}

// Close stops listening, closes every connection and removes the socket.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	err := s.ln.Close()
	for _, c := range conns {
		c.close(errors.New("nodeproto: server closed"))
	}
	os.Remove(s.opts.Path)
	return err
}

type reply struct {
	m     message
	files []*os.File
}

// Conn is one ztunnel connection, seen from the agent. Requests are sent
// one at a time, each waiting for its ack.
type Conn struct {
	c   conn
	pid int

	reqMu sync.Mutex // one request in flight

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan reply
	done    chan struct{}
	err     error
}

// PeerPID returns the pid of the connected process (SO_PEERCRED), 0 if
// unknown: the agent finds ztunnel's cgroup with it.
func (c *Conn) PeerPID() int { return c.pid }

// Done is closed when the connection ends.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Conn) close(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return
	default:
	}
	c.err = err
	close(c.done)
	c.c.uc.Close()
}

func (c *Conn) readLoop() {
	for {
		m, files, err := c.c.recv()
		if err != nil {
			c.close(fmt.Errorf("nodeproto: read: %w", err))
			return
		}
		if m.Type != typeAck {
			closeFiles(files)
			c.close(fmt.Errorf("nodeproto: unexpected %q from ztunnel", m.Type))
			return
		}
		c.mu.Lock()
		ch := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ch == nil {
			closeFiles(files) // a request we stopped waiting for
			continue
		}
		ch <- reply{m, files}
	}
}

func (c *Conn) request(ctx context.Context, m message, files ...*os.File) (reply, error) {
	c.reqMu.Lock()
	defer c.reqMu.Unlock()
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		return reply{}, fmt.Errorf("%w: %v", ErrNotConnected, c.err)
	default:
	}
	c.nextID++
	m.ID = c.nextID
	ch := make(chan reply, 1)
	c.pending[m.ID] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, m.ID)
		c.mu.Unlock()
	}
	if err := c.c.send(m, files...); err != nil {
		forget()
		c.close(err)
		return reply{}, err
	}
	select {
	case r := <-ch:
		if r.m.Error != "" {
			closeFiles(r.files)
			return reply{}, fmt.Errorf("nodeproto: ztunnel: %s", r.m.Error)
		}
		return r, nil
	case <-c.done:
		forget()
		return reply{}, fmt.Errorf("%w: %v", ErrNotConnected, c.Err())
	case <-ctx.Done():
		forget()
		return reply{}, fmt.Errorf("nodeproto: waiting for ztunnel: %w", ctx.Err())
	}
}

// AddPod hands pod and its network namespace to ztunnel and returns the
// inbound listeners ztunnel opened in that namespace (the caller owns
// them). The netns file stays the caller's.
func (c *Conn) AddPod(ctx context.Context, pod Pod, netns *os.File) ([]*os.File, error) {
	if err := pod.Validate(); err != nil {
		return nil, err
	}
	if netns == nil {
		return nil, fmt.Errorf("nodeproto: add pod %s: no netns", pod.UID)
	}
	r, err := c.request(ctx, message{Type: typeAdd, Pod: &pod, FDs: []string{fdNetns}}, netns)
	if err != nil {
		return nil, fmt.Errorf("nodeproto: add pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	var out []*os.File
	for i, role := range r.m.FDs {
		if role == fdInbound {
			out = append(out, r.files[i])
		} else {
			r.files[i].Close()
		}
	}
	return out, nil
}

// RemovePod tells ztunnel to stop serving a pod.
func (c *Conn) RemovePod(ctx context.Context, uid string) error {
	if uid == "" {
		return errors.New("nodeproto: remove pod: empty uid")
	}
	r, err := c.request(ctx, message{Type: typeRemove, UID: uid})
	if err != nil {
		return fmt.Errorf("nodeproto: remove pod %s: %w", uid, err)
	}
	closeFiles(r.files)
	return nil
}

// SnapshotDone ends the snapshot that follows a connect.
func (c *Conn) SnapshotDone(ctx context.Context) error {
	r, err := c.request(ctx, message{Type: typeSnapshotDone})
	if err != nil {
		return fmt.Errorf("nodeproto: snapshot: %w", err)
	}
	closeFiles(r.files)
	return nil
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}
