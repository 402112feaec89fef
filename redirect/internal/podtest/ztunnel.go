package podtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-mesh/warren/redirect/loader"
	"github.com/warren-mesh/warren/redirect/nodeproto"
)

// FakeZtunnel is a ztunnel stand-in speaking nodeproto for real: for each
// pod it opens the in-pod listeners capture sends traffic to and answers
// every connection with one line:
//
//	outbound (15001):  "ztunnel-outbound orig=<original destination> pod=<uid>"
//	inbound (15006):   "ztunnel-inbound local=<ip:port> peer=<ip:port> pod=<uid>"
//	                   ("ztunnel-inbound-rejected …" when Strict)
type FakeZtunnel struct {
	// Strict rejects inbound plaintext, as strict mTLS mode would.
	Strict bool

	table atomic.Pointer[nodeproto.OrigDstTable]

	mu        sync.Mutex
	pods      map[string]*ztPod
	snapshots chan []string
	cancel    context.CancelFunc
	done      chan struct{}
}

type ztPod struct {
	pod     nodeproto.Pod
	netns   *os.File
	lns     []*net.TCPListener
	inbound *net.TCPListener
}

// NewFakeZtunnel returns a FakeZtunnel serving no pods.
func NewFakeZtunnel() *FakeZtunnel {
	return &FakeZtunnel{pods: map[string]*ztPod{}, snapshots: make(chan []string, 16)}
}

var _ nodeproto.Handler = (*FakeZtunnel)(nil)

// Start connects to the agent at path and keeps reconnecting until Close.
func (z *FakeZtunnel) Start(ctx context.Context, path string) error {
	ctx, cancel := context.WithCancel(ctx)
	z.cancel = cancel
	z.done = make(chan struct{})
	go func() {
		defer close(z.done)
		nodeproto.Run(ctx, path, z, 50*time.Millisecond, func(info nodeproto.ServerInfo) {
			z.table.Store(info.OrigDst)
		})
	}()
	return nil
}

// WaitSnapshot waits for the next snapshot after a (re)connect.
func (z *FakeZtunnel) WaitSnapshot(ctx context.Context) error {
	select {
	case <-z.snapshots:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("podtest: no snapshot from the agent: %w", ctx.Err())
	}
}

// Close disconnects and closes every pod's listeners.
func (z *FakeZtunnel) Close() {
	if z.cancel != nil {
		z.cancel()
		<-z.done
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	for uid, p := range z.pods {
		p.close()
		delete(z.pods, uid)
	}
}

// Pods returns the uids served, sorted.
func (z *FakeZtunnel) Pods() []string {
	z.mu.Lock()
	defer z.mu.Unlock()
	var out []string
	for uid := range z.pods {
		out = append(out, uid)
	}
	slices.Sort(out)
	return out
}

func (p *ztPod) close() {
	for _, l := range p.lns {
		l.Close()
	}
	p.netns.Close()
}

// AddPod implements nodeproto.Handler.
func (z *FakeZtunnel) AddPod(ctx context.Context, pod nodeproto.Pod, netns *os.File) ([]*os.File, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if old := z.pods[pod.UID]; old != nil {
		if old.pod.NetnsCookie == pod.NetnsCookie {
			netns.Close()
			f, err := old.inbound.File()
			if err != nil {
				return nil, err
			}
			return []*os.File{f}, nil
		}
		old.close()
		delete(z.pods, pod.UID)
	}
	p := &ztPod{pod: pod, netns: netns}
	out4, err := ListenIn(netns, "tcp4", "127.0.0.1:15001")
	if err != nil {
		netns.Close()
		return nil, err
	}
	p.lns = append(p.lns, out4)
	if out6, err := ListenIn(netns, "tcp6", "[::1]:15001"); err == nil {
		p.lns = append(p.lns, out6)
	}
	in, err := ListenIn(netns, "tcp", "[::]:15006") // dual-stack
	if err != nil {
		p.close()
		return nil, err
	}
	p.lns = append(p.lns, in)
	p.inbound = in
	for _, l := range p.lns[:len(p.lns)-1] {
		go serveBanner(l, func(c net.Conn) string { return z.outboundLine(p, c) })
	}
	go serveBanner(in, func(c net.Conn) string {
		verdict := "ztunnel-inbound"
		if z.Strict {
			verdict = "ztunnel-inbound-rejected"
		}
		return fmt.Sprintf("%s local=%s peer=%s pod=%s\n", verdict, c.LocalAddr(), c.RemoteAddr(), pod.UID)
	})
	f, err := in.File()
	if err != nil {
		p.close()
		return nil, err
	}
	z.pods[pod.UID] = p
	return []*os.File{f}, nil
}

func (z *FakeZtunnel) outboundLine(p *ztPod, c net.Conn) string {
	t := z.table.Load()
	if t == nil {
		return "ztunnel-outbound error=no original-destination table\n"
	}
	peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	orig, err := t.Lookup(p.pod.NetnsCookie, peer)
	if err != nil {
		return fmt.Sprintf("ztunnel-outbound error=%v\n", err)
	}
	return fmt.Sprintf("ztunnel-outbound orig=%s pod=%s\n", orig, p.pod.UID)
}

// RemovePod implements nodeproto.Handler.
func (z *FakeZtunnel) RemovePod(ctx context.Context, uid string) error {
	z.mu.Lock()
	defer z.mu.Unlock()
	if p := z.pods[uid]; p != nil {
		p.close()
		delete(z.pods, uid)
	}
	return nil
}

// SnapshotDone implements nodeproto.Handler.
func (z *FakeZtunnel) SnapshotDone(ctx context.Context, uids []string) error {
	z.mu.Lock()
	for uid, p := range z.pods {
		if !slices.Contains(uids, uid) {
			p.close()
			delete(z.pods, uid)
		}
	}
	z.mu.Unlock()
	select {
	case z.snapshots <- slices.Clone(uids):
	default:
	}
	return nil
}

// DialFromPod dials addr from inside pod uid's netns, as ztunnel does for
// its own connections (outbound HBONE, passthrough to the app).
func (z *FakeZtunnel) DialFromPod(uid, network, addr string) DialResult {
	z.mu.Lock()
	p := z.pods[uid]
	z.mu.Unlock()
	if p == nil {
		return DialResult{Err: "unknown pod " + uid}
	}
	var r DialResult
	err := loader.InNetns(p.netns, func() error {
		r = dial(network, "", addr)
		return nil
	})
	if err != nil {
		return DialResult{Err: err.Error()}
	}
	return r
}

// errNoPod is returned for unknown pods.
var errNoPod = errors.New("podtest: unknown pod")

// InboundListener returns a dup of pod uid's inbound listener.
func (z *FakeZtunnel) InboundListener(uid string) (*os.File, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	p := z.pods[uid]
	if p == nil {
		return nil, errNoPod
	}
	return p.inbound.File()
}
