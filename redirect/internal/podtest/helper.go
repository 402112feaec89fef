package podtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/warren-mesh/warren/redirect"
	"github.com/warren-mesh/warren/redirect/loader"
	"github.com/warren-mesh/warren/redirect/nodeproto"
)

const helperEnv = "WARREN_PODTEST_HELPER"

// Main runs the tests, or, in a process started by StartProc, the pod
// helper. Use it from TestMain: func TestMain(m *testing.M) { podtest.Main(m) }.
func Main(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

type request struct {
	Op      string `json:"op"`
	Network string `json:"network,omitempty"`
	Addr    string `json:"addr,omitempty"`
	Name    string `json:"name,omitempty"`
	N       int    `json:"n,omitempty"`
	Path    string `json:"path,omitempty"`
	UID     string `json:"uid,omitempty"`
	Cookie  uint64 `json:"cookie,omitempty"`
	Accept  bool   `json:"accept,omitempty"`
	Port    int    `json:"port,omitempty"`
}

// DialResult is what a dial from a pod saw.
type DialResult struct {
	Local  string `json:"local,omitempty"`
	Remote string `json:"remote,omitempty"`
	Data   string `json:"data,omitempty"`
	Err    string `json:"err,omitempty"`
}

func (r DialResult) String() string {
	if r.Err != "" {
		return "error: " + r.Err
	}
	return fmt.Sprintf("%s->%s %q", r.Local, r.Remote, r.Data)
}

type response struct {
	DialResult
	NS  int64 `json:"ns,omitempty"`
	NS2 int64 `json:"ns2,omitempty"`
	Pid int   `json:"pid,omitempty"`
}

// helperMain serves requests on stdin/stdout inside the netns (entered by
// nsenter) and cgroup (entered at clone) it was started in.
func helperMain() int {
	in := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	var zt *FakeZtunnel
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out.Encode(response{Pid: os.Getpid()})
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			out.Encode(response{DialResult: DialResult{Err: err.Error()}})
			continue
		}
		var resp response
		switch req.Op {
		case "dial":
			resp.DialResult = dial(req.Network, "", req.Addr)
		case "dns":
			resp.DialResult = dnsQuery(req.Addr, req.Name)
		case "loop":
			mean, median, err := connectLoop(req.Addr, req.N, req.Accept, req.Port)
			resp.NS, resp.NS2 = mean.Nanoseconds(), median.Nanoseconds()
			if err != nil {
				resp.Err = err.Error()
			}
		case "sockopt":
			d, err := getsockoptLoop(req.N)
			resp.NS = d.Nanoseconds()
			if err != nil {
				resp.Err = err.Error()
			}
		case "odst":
			resp.DialResult, resp.NS, resp.NS2 = origDstBench(req.Addr, req.Path, req.Cookie, req.N)
		case "ztunnel":
			zt = NewFakeZtunnel()
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			err := zt.Start(ctx, req.Path)
			if err == nil {
				err = zt.WaitSnapshot(cctx)
			}
			ccancel()
			if err != nil {
				resp.Err = err.Error()
			}
		case "open":
			l, err := loader.Open(loader.Options{Cgroup: req.Path, PinPath: req.Name})
			if err == nil {
				l.Uninstall()
				resp.Data = "opened"
			} else {
				resp.Err = err.Error()
				if errors.Is(err, redirect.ErrNotSupported) {
					resp.Data = "not-supported"
				}
			}
		case "ztdial":
			if zt == nil {
				resp.Err = "no ztunnel started"
				break
			}
			resp.DialResult = zt.DialFromPod(req.UID, req.Network, req.Addr)
		default:
			resp.Err = "unknown op " + req.Op
		}
		out.Encode(resp)
	}
	if zt != nil {
		zt.Close()
	}
	return 0
}

// dial connects (from local, if set), reads what the server says until EOF
// and reports both ends. Network "tcp6raw" connects an AF_INET6 socket
// with raw syscalls, which allows IPv4-mapped destinations (::ffff:a.b.c.d,
// as dual-stack Java sockets use) that Go's dialer refuses.
func dial(network, local, addr string) DialResult {
	if network == "tcp6raw" {
		return dialRaw6(addr)
	}
	d := net.Dialer{Timeout: 3 * time.Second}
	if local != "" {
		la, err := net.ResolveTCPAddr(network, local)
		if err != nil {
			return DialResult{Err: err.Error()}
		}
		d.LocalAddr = la
	}
	c, err := d.Dial(network, addr)
	if err != nil {
		return DialResult{Err: err.Error()}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(io.LimitReader(c, 4096))
	r := DialResult{Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String(), Data: strings.TrimSpace(string(b))}
	if err != nil && len(b) == 0 {
		r.Err = err.Error()
	}
	return r
}

func dialRaw6(addr string) DialResult {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return DialResult{Err: err.Error()}
	}
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return DialResult{Err: err.Error()}
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{Sec: 3})
	if err := unix.Connect(fd, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}); err != nil {
		unix.Close(fd)
		return DialResult{Err: err.Error()}
	}
	f := os.NewFile(uintptr(fd), "raw6")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return DialResult{Err: err.Error()}
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(io.LimitReader(c, 4096))
	r := DialResult{Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String(), Data: strings.TrimSpace(string(b))}
	if err != nil && len(b) == 0 {
		r.Err = err.Error()
	}
	return r
}

// dnsQuery resolves name (A) against server over UDP with a connected
// socket, as glibc's resolver does.
func dnsQuery(server, name string) DialResult {
	c, err := net.DialTimeout("udp", server, 2*time.Second)
	if err != nil {
		return DialResult{Err: err.Error()}
	}
	defer c.Close()
	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: 4242, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}},
	}
	b, err := q.Pack()
	if err != nil {
		return DialResult{Err: err.Error()}
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(b); err != nil {
		return DialResult{Err: err.Error()}
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return DialResult{Err: err.Error(), Local: c.LocalAddr().String()}
	}
	var m dnsmessage.Message
	if err := m.Unpack(buf[:n]); err != nil {
		return DialResult{Err: err.Error()}
	}
	r := DialResult{Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String()}
	for _, a := range m.Answers {
		if ar, ok := a.Body.(*dnsmessage.AResource); ok {
			r.Data = netip.AddrFrom4(ar.A).String()
		}
	}
	if r.Data == "" {
		r.Err = "no A answer"
	}
	return r
}

// connectLoop measures n socket+connect+close cycles with raw syscalls
// (RST close: no TIME_WAIT). With accept, this process also listens on
// 0.0.0.0:port (default 15001) and accepts and closes every connection itself,
// in the same thread, so no other process's scheduling enters the
// measurement. It returns the mean and the median cycle.
func connectLoop(addr string, n int, accept bool, port int) (mean, median time.Duration, err error) {
	if port == 0 {
		port = benchPort
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return 0, 0, err
	}
	fam := unix.AF_INET
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		fam = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	lfd := -1
	if accept {
		if lfd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return 0, 0, err
		}
		defer unix.Close(lfd)
		unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if err := unix.Bind(lfd, &unix.SockaddrInet4{Port: port}); err != nil {
			return 0, 0, fmt.Errorf("listen: %w", err)
		}
		if err := unix.Listen(lfd, 128); err != nil {
			return 0, 0, err
		}
	}
	cycles := make([]time.Duration, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		t0 := time.Now()
		fd, err := unix.Socket(fam, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return 0, 0, err
		}
		if err := unix.Connect(fd, sa); err != nil {
			unix.Close(fd)
			return 0, 0, fmt.Errorf("connect %d: %w", i, err)
		}
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		unix.Close(fd)
		if lfd >= 0 {
			nfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
			if err != nil {
				return 0, 0, fmt.Errorf("accept %d: %w", i, err)
			}
			unix.Close(nfd)
		}
		cycles[i] = time.Since(t0)
	}
	total := time.Since(start)
	if n == 0 {
		return 0, 0, nil
	}
	slices.Sort(cycles)
	return total / time.Duration(n), cycles[n/2], nil
}

// benchPort is where connectLoop's own listener listens (ztunnel's
// outbound port, where captured connects land).
const benchPort = 15001

// getsockoptLoop measures n getsockopt(SO_ERROR) calls, what Go's dialer
// does after every connect: the tax a cgroup/getsockopt program puts on
// every pod. It returns the median of the means of chunks of 100 calls.
func getsockoptLoop(n int) (time.Duration, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var err2 error
	d := chunked(n, func() {
		if _, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil {
			err2 = err
		}
	})
	return d, err2
}

// chunked runs fn n times in chunks of 100 and returns the median of the
// chunks' mean durations: robust against preemption on a busy machine.
func chunked(n int, fn func()) time.Duration {
	const chunk = 100
	var means []time.Duration
	for done := 0; done < n; {
		k := min(chunk, n-done)
		t0 := time.Now()
		for i := 0; i < k; i++ {
			fn()
		}
		means = append(means, time.Since(t0)/time.Duration(k))
		done += k
	}
	if len(means) == 0 {
		return 0
	}
	slices.Sort(means)
	return means[len(means)/2]
}

// origDstBench connects to addr (captured to 127.0.0.1:15001, where this
// process listens), accepts, and measures n original-destination lookups
// both ways ztunnel could do them (median of chunk means): getsockopt(SO_ORIGINAL_DST) on the
// accepted socket (answered by the cgroup/getsockopt program) and a lookup
// in the pinned wr_odst map at mapPath. It returns what each found in
// Data ("getsockopt=<ip:port> map=<ip:port>").
func origDstBench(addr, mapPath string, cookie uint64, n int) (DialResult, int64, int64) {
	ln, err := net.Listen("tcp4", "127.0.0.1:15001")
	if err != nil {
		return DialResult{Err: err.Error()}, 0, 0
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			acc <- c
		}
		close(acc)
	}()
	c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
	if err != nil {
		return DialResult{Err: err.Error()}, 0, 0
	}
	defer c.Close()
	sc, ok := <-acc
	if !ok {
		return DialResult{Err: "no connection at 127.0.0.1:15001"}, 0, 0
	}
	defer sc.Close()
	raw, _ := sc.(*net.TCPConn).SyscallConn()
	var gs string
	var gsNS int64
	raw.Control(func(fd uintptr) {
		get := func() (string, error) {
			mreq, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, 80) // SO_ORIGINAL_DST: a sockaddr_in in 16 bytes
			if err != nil {
				return "", err
			}
			b := mreq.Multiaddr
			port := uint16(b[2])<<8 | uint16(b[3])
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}), port).String(), nil
		}
		gs, err = get()
		if err != nil {
			gs = "error:" + err.Error()
			return
		}
		gsNS = chunked(n, func() { get() }).Nanoseconds()
	})
	var mp string
	var mpNS int64
	if f, err := os.Open(mapPath); err == nil {
		f.Close()
		m, err := loadPinnedMapRO(mapPath)
		if err != nil {
			mp = "error:" + err.Error()
		} else {
			t := nodeproto.NewOrigDstTable(m)
			defer t.Close()
			peer := sc.RemoteAddr().(*net.TCPAddr).AddrPort()
			got, err := t.Lookup(cookie, peer)
			if err != nil {
				mp = "error:" + err.Error()
			} else {
				mp = got.String()
				mpNS = chunked(n, func() { t.Lookup(cookie, peer) }).Nanoseconds()
			}
		}
	}
	return DialResult{Data: "getsockopt=" + gs + " map=" + mp}, gsNS, mpNS
}

// Proc is a "pod" process: this test binary re-executed inside a netns
// and a cgroup, answering requests.
type Proc struct {
	Pid  int
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *json.Decoder
	mu   sync.Mutex
	errb *strings.Builder
}

// StartProc starts a pod process in ns (via nsenter --net, so every thread
// is inside) and cg (at clone, so every socket it opens is charged to cg).
// The test binary's TestMain must call Main.
func StartProc(t testing.TB, ns *Netns, cg *Cgroup) *Proc {
	t.Helper()
	return StartProcWrapped(t, ns, cg)
}

// StartProcWrapped is StartProc with a command (e.g. setpriv …) run
// between nsenter and the test binary.
func StartProcWrapped(t testing.TB, ns *Netns, cg *Cgroup, wrapper ...string) *Proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Skip("podtest: nsenter not found")
	}
	cgf, err := os.Open(cg.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer cgf.Close()
	args := append([]string{"--net=" + ns.Path}, wrapper...)
	cmd := exec.Command(nsenter, append(args, exe, "-test.run=^$")...)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgf.Fd())}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc{cmd: cmd, in: in, out: json.NewDecoder(out), errb: &strings.Builder{}}
	cmd.Stderr = &lockedWriter{b: p.errb}
	if err := cmd.Start(); err != nil {
		t.Fatalf("podtest: start pod process: %v", err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	var hello response
	if err := p.out.Decode(&hello); err != nil {
		t.Fatalf("podtest: pod process did not start: %v (stderr: %s)", err, p.errb.String())
	}
	p.Pid = hello.Pid
	return p
}

type lockedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (p *Proc) do(req request) (response, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, _ := json.Marshal(req)
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		return response{}, err
	}
	var resp response
	if err := p.out.Decode(&resp); err != nil {
		return response{}, fmt.Errorf("pod process: %w (stderr: %s)", err, p.errb.String())
	}
	return resp, nil
}

// Dial connects from the pod to addr and reports what the server said.
func (p *Proc) Dial(network, addr string) DialResult {
	r, err := p.do(request{Op: "dial", Network: network, Addr: addr})
	if err != nil {
		return DialResult{Err: err.Error()}
	}
	return r.DialResult
}

// DNS resolves name (A) against server (ip:53) over UDP from the pod.
func (p *Proc) DNS(server, name string) DialResult {
	r, err := p.do(request{Op: "dns", Addr: server, Name: name})
	if err != nil {
		return DialResult{Err: err.Error()}
	}
	return r.DialResult
}

// ConnectLoop runs n connects to addr in the pod (someone else accepts)
// and returns the mean time per connect.
func (p *Proc) ConnectLoop(addr string, n int) (time.Duration, error) {
	r, err := p.do(request{Op: "loop", Addr: addr, N: n})
	if err != nil {
		return 0, err
	}
	if r.Err != "" {
		return 0, errors.New(r.Err)
	}
	return time.Duration(r.NS), nil
}

// ConnectAcceptLoop runs n connect+accept cycles in the pod: it listens on
// 0.0.0.0:15001 itself, connects to addr (which must end there: directly
// or captured) and accepts. It returns the mean and median cycle.
func (p *Proc) ConnectAcceptLoop(addr string, n int) (mean, median time.Duration, err error) {
	return p.ConnectAcceptLoopPort(addr, 0, n)
}

// ConnectAcceptLoopPort is ConnectAcceptLoop listening on port instead.
func (p *Proc) ConnectAcceptLoopPort(addr string, port, n int) (mean, median time.Duration, err error) {
	r, err := p.do(request{Op: "loop", Addr: addr, N: n, Accept: true, Port: port})
	if err != nil {
		return 0, 0, err
	}
	if r.Err != "" {
		return 0, 0, errors.New(r.Err)
	}
	return time.Duration(r.NS), time.Duration(r.NS2), nil
}

// OpenLoader calls loader.Open in the pod process and returns its error;
// notSupported reports errors.Is(err, redirect.ErrNotSupported).
func (p *Proc) OpenLoader(cgroup, pinPath string) (notSupported bool, err error) {
	r, perr := p.do(request{Op: "open", Path: cgroup, Name: pinPath})
	if perr != nil {
		return false, perr
	}
	if r.Err == "" {
		return false, nil
	}
	return r.Data == "not-supported", errors.New(r.Err)
}

// GetsockoptLoop runs n getsockopt(SO_ERROR) in the pod.
func (p *Proc) GetsockoptLoop(n int) (time.Duration, error) {
	r, err := p.do(request{Op: "sockopt", N: n})
	if err != nil {
		return 0, err
	}
	if r.Err != "" {
		return 0, errors.New(r.Err)
	}
	return time.Duration(r.NS), nil
}

// OrigDst connects to addr from the pod (which must be captured to the
// pod's 127.0.0.1:15001, where the process listens) and looks the original
// destination up n times both ways; see origDstBench.
func (p *Proc) OrigDst(addr, mapPath string, cookie uint64, n int) (found string, getsockopt, mapLookup time.Duration, err error) {
	r, err := p.do(request{Op: "odst", Addr: addr, Path: mapPath, Cookie: cookie, N: n})
	if err != nil {
		return "", 0, 0, err
	}
	if r.Err != "" {
		return "", 0, 0, errors.New(r.Err)
	}
	return r.Data, time.Duration(r.NS), time.Duration(r.NS2), nil
}

// StartZtunnel runs a FakeZtunnel in this process, connected to the agent
// at path; it returns once the first snapshot is done.
func (p *Proc) StartZtunnel(path string) error {
	r, err := p.do(request{Op: "ztunnel", Path: path})
	if err != nil {
		return err
	}
	if r.Err != "" {
		return errors.New(r.Err)
	}
	return nil
}

// ZtunnelDial dials from inside pod uid's netns as this process's ztunnel.
func (p *Proc) ZtunnelDial(uid, network, addr string) DialResult {
	r, err := p.do(request{Op: "ztdial", UID: uid, Network: network, Addr: addr})
	if err != nil {
		return DialResult{Err: err.Error()}
	}
	return r.DialResult
}

// loadPinnedMapRO opens a pinned BPF map read-only (BPF_OBJ_GET).
func loadPinnedMapRO(path string) (*os.File, error) {
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}
