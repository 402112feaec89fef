package loader

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/warren-mesh/warren/redirect"
	"github.com/warren-mesh/warren/redirect/bpf"
)

// Options configures a Loader.
type Options struct {
	// Cgroup is the cgroup v2 directory the cgroup programs attach to, once:
	// the node's pod cgroup (kubelet's kubepods under its cgroupRoot).
	// Absolute, or relative to the cgroup v2 mount. Required. Never the
	// machine's root when several nodes share a kernel.
	Cgroup string
	// PinPath is this agent's bpffs directory; maps, programs and links are
	// pinned there. Default /sys/fs/bpf/warren. Several agents on one kernel
	// need distinct PinPaths.
	PinPath string
	// OutboundPort is ztunnel's in-pod outbound listener port. Default 15001.
	OutboundPort uint16
	// HBONEPort is never steered inbound. Default 15008.
	HBONEPort uint16
	// ZtunnelMark, if not zero, also exempts sockets carrying this SO_MARK
	// from capture (besides ztunnel's cgroup, see SetSkipCgroups).
	ZtunnelMark uint32
	// AttachGetsockopt also attaches the cgroup/getsockopt program that
	// answers SO_ORIGINAL_DST. It only helps if ztunnel runs below Cgroup,
	// and it taxes every getsockopt of every pod; off by default (see
	// docs/redirect.md, "Original destination").
	AttachGetsockopt bool
}

func (o Options) withDefaults() Options {
	if o.PinPath == "" {
		o.PinPath = "/sys/fs/bpf/warren"
	}
	if o.OutboundPort == 0 {
		o.OutboundPort = 15001
	}
	if o.HBONEPort == 0 {
		o.HBONEPort = 15008
	}
	return o
}

// Pin names under Options.PinPath (maps are pinned by their own names).
const (
	pinPodsDir = "pods" // pods/<netns cookie>: the pod's sk_lookup link
)

// cgroupObjs are the programs attached once per node plus every map.
type cgroupObjs struct {
	bpf.CaptureMaps
	Connect4   *ebpf.Program `ebpf:"wr_connect4"`
	Connect6   *ebpf.Program `ebpf:"wr_connect6"`
	SockOps    *ebpf.Program `ebpf:"wr_sock_ops"`
	Getsockopt *ebpf.Program `ebpf:"wr_getsockopt"`
}

type cgroupAttach struct {
	name   string
	attach ebpf.AttachType
	prog   func(*cgroupObjs) *ebpf.Program
}

var cgroupAttachments = []cgroupAttach{
	{"connect4", ebpf.AttachCGroupInet4Connect, func(o *cgroupObjs) *ebpf.Program { return o.Connect4 }},
	{"connect6", ebpf.AttachCGroupInet6Connect, func(o *cgroupObjs) *ebpf.Program { return o.Connect6 }},
	{"sock_ops", ebpf.AttachCGroupSockOps, func(o *cgroupObjs) *ebpf.Program { return o.SockOps }},
	{"getsockopt", ebpf.AttachCGroupGetsockopt, func(o *cgroupObjs) *ebpf.Program { return o.Getsockopt }},
}

type podState struct {
	cfg      PodConfig
	link     link.Link // sk_lookup link, pinned at pods/<cookie>
	adopted  bool      // link from a previous agent, program not yet refreshed
	families []uint32  // address families with an inbound listener
}

// Loader is the real Dataplane: programs loaded and attached, maps pinned.
type Loader struct {
	opts     Options
	cgroup   string // absolute cgroup v2 directory
	spec     *ebpf.CollectionSpec
	btfCache *btf.Cache

	mu    sync.Mutex
	objs  cgroupObjs
	links map[string]link.Link // cgroup links by attachment name
	pods  map[uint64]*podState
}

var _ Dataplane = (*Loader)(nil)

// Open checks kernel support, loads the programs, attaches (or re-adopts
// from PinPath) the cgroup programs and re-adopts the pods a previous agent
// enrolled. It returns an error wrapping redirect.ErrNotSupported, naming the
// feature, when the kernel, the capabilities or the cgroup setup fall short.
func Open(opts Options) (*Loader, error) {
	opts = opts.withDefaults()
	if opts.Cgroup == "" {
		return nil, errors.New("loader: Options.Cgroup is required")
	}
	mounts, err := readMounts()
	if err != nil {
		return nil, err
	}
	if _, err := FindCgroup2(mounts); err != nil {
		return nil, err
	}
	if err := CheckNetClsPrio(mounts); err != nil {
		return nil, err
	}
	cg, err := ResolveCgroup(opts.Cgroup)
	if err != nil {
		return nil, err
	}
	if err := EnsureBPFFS(opts.PinPath); err != nil {
		return nil, err
	}
	if err := Probe(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(opts.PinPath, pinPodsDir), 0o700); err != nil {
		return nil, fmt.Errorf("loader: pin directory: %w", err)
	}
	spec, err := bpf.LoadCapture()
	if err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	for name, v := range map[string]any{
		bpf.VarOutboundPort: opts.OutboundPort,
		bpf.VarHBONEPort:    opts.HBONEPort,
		bpf.VarZtunnelMark:  opts.ZtunnelMark,
	} {
		if err := spec.Variables[name].Set(v); err != nil {
			return nil, fmt.Errorf("loader: set %s: %w", name, err)
		}
	}
	l := &Loader{
		opts:     opts,
		cgroup:   cg,
		spec:     spec,
		btfCache: btf.NewCache(),
		links:    map[string]link.Link{},
		pods:     map[uint64]*podState{},
	}
	if err := spec.LoadAndAssign(&l.objs, &ebpf.CollectionOptions{
		Maps:  ebpf.MapOptions{PinPath: opts.PinPath},
		Cache: l.btfCache,
	}); err != nil {
		return nil, classifyLoadErr("loading capture programs", err)
	}
	if err := l.attachCgroup(); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.adoptPods(); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// classifyLoadErr turns permission and missing-feature errors into
// ErrNotSupported with the feature named.
func classifyLoadErr(what string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM) && !isVerifierErr(err):
		return redirect.NotSupported("CAP_BPF and CAP_NET_ADMIN ("+what+": permission denied)", err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return redirect.NotSupported(what, err)
	}
	return fmt.Errorf("loader: %s: %w", what, err)
}

func isVerifierErr(err error) bool {
	var ve *ebpf.VerifierError
	return errors.As(err, &ve)
}

func (l *Loader) pin(name string) string { return filepath.Join(l.opts.PinPath, name) }

func (l *Loader) podPin(cookie uint64) string {
	return filepath.Join(l.opts.PinPath, pinPodsDir, strconv.FormatUint(cookie, 10))
}

// attachCgroup attaches the cgroup programs, or re-adopts pinned links and
// swaps the freshly loaded programs in atomically (no window without
// capture across an agent restart or upgrade).
func (l *Loader) attachCgroup() error {
	cgID, err := CgroupID(l.cgroup)
	if err != nil {
		return err
	}
	for _, a := range cgroupAttachments {
		prog := a.prog(&l.objs)
		linkPin, progPin := l.pin("link_"+a.name), l.pin("prog_"+a.name)
		want := a.name != "getsockopt" || l.opts.AttachGetsockopt
		old, err := link.LoadPinnedLink(linkPin, nil)
		if err == nil {
			info, ierr := old.Info()
			same := ierr == nil && info.Cgroup() != nil && info.Cgroup().CgroupId == cgID
			if same && want {
				if err := old.Update(prog); err != nil {
					old.Close()
					return fmt.Errorf("loader: update pinned %s link: %w", a.name, err)
				}
				l.links[a.name] = old
				if err := repin(prog, progPin); err != nil {
					return err
				}
				continue
			}
			// Attached elsewhere (Cgroup changed) or no longer wanted.
			old.Unpin()
			old.Close()
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("loader: load pinned %s link: %w", a.name, err)
		}
		os.Remove(progPin)
		if !want {
			continue
		}
		lk, err := link.AttachCgroup(link.CgroupOptions{Path: l.cgroup, Attach: a.attach, Program: prog})
		if err != nil {
			return classifyLoadErr("attaching "+a.name+" to cgroup "+l.cgroup, err)
		}
		if err := lk.Pin(linkPin); err != nil {
			lk.Close()
			if errors.Is(err, ebpf.ErrNotSupported) {
				return redirect.NotSupported("bpf_link for cgroup programs (kernel >= 5.7; without it capture ends when the agent exits)", err)
			}
			return fmt.Errorf("loader: pin %s link: %w", a.name, err)
		}
		l.links[a.name] = lk
		if err := repin(prog, progPin); err != nil {
			return err
		}
	}
	return nil
}

func repin(p *ebpf.Program, path string) error {
	os.Remove(path)
	if err := p.Pin(path); err != nil {
		return fmt.Errorf("loader: pin program %s: %w", filepath.Base(path), err)
	}
	return nil
}

// adoptPods rebuilds the per-pod state from the pinned maps and links and
// removes leftovers of pods released halfway.
func (l *Loader) adoptPods() error {
	var (
		cookie uint64
		cfg    bpf.CapturePodCfg
	)
	it := l.objs.WrPods.Iterate()
	for it.Next(&cookie, &cfg) {
		l.pods[cookie] = &podState{}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("loader: read wr_pods: %w", err)
	}
	var pk bpf.CapturePortKey
	var one uint8
	var stale []bpf.CapturePortKey
	pit := l.objs.WrPorts.Iterate()
	for pit.Next(&pk, &one) {
		p := l.pods[pk.Netns]
		switch {
		case p == nil:
			stale = append(stale, pk)
		case pk.Dir == bpf.DirOutbound:
			p.cfg.ExcludeOutboundPorts = append(p.cfg.ExcludeOutboundPorts, pk.Port)
		default:
			p.cfg.ExcludeInboundPorts = append(p.cfg.ExcludeInboundPorts, pk.Port)
		}
	}
	if err := pit.Err(); err != nil {
		return fmt.Errorf("loader: read wr_ports: %w", err)
	}
	for _, k := range stale {
		l.objs.WrPorts.Delete(k)
	}
	var ck bpf.CaptureCidrKey
	var staleC []bpf.CaptureCidrKey
	cit := l.objs.WrCidrs.Iterate()
	for cit.Next(&ck, &one) {
		c, pfx := decodeCIDRKey(ck)
		if p := l.pods[c]; p != nil {
			p.cfg.ExcludeOutboundCIDRs = append(p.cfg.ExcludeOutboundCIDRs, pfx)
		} else {
			staleC = append(staleC, ck)
		}
	}
	if err := cit.Err(); err != nil {
		return fmt.Errorf("loader: read wr_cidrs: %w", err)
	}
	for _, k := range staleC {
		l.objs.WrCidrs.Delete(k)
	}
	var ik, next bpf.CaptureInboundKey
	var staleI []bpf.CaptureInboundKey
	for err := l.objs.WrInbound.NextKey(nil, &next); err == nil; err = l.objs.WrInbound.NextKey(ik, &next) {
		ik = next
		if l.pods[ik.Netns] == nil {
			staleI = append(staleI, ik)
		}
	}
	for _, k := range staleI {
		l.objs.WrInbound.Delete(k)
	}
	for c, p := range l.pods {
		p.cfg = p.cfg.Normalize()
		for _, fam := range []uint32{bpf.AFInet, bpf.AFInet6} {
			var v uint64
			if l.objs.WrInbound.Lookup(bpf.CaptureInboundKey{Netns: c, Family: fam}, &v) == nil {
				p.families = append(p.families, fam)
			}
		}
	}
	entries, err := os.ReadDir(filepath.Join(l.opts.PinPath, pinPodsDir))
	if err != nil {
		return fmt.Errorf("loader: %w", err)
	}
	for _, e := range entries {
		c, err := strconv.ParseUint(e.Name(), 10, 64)
		path := filepath.Join(l.opts.PinPath, pinPodsDir, e.Name())
		if err != nil {
			continue
		}
		lk, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			return fmt.Errorf("loader: load pinned sk_lookup link of netns %d: %w", c, err)
		}
		p := l.pods[c]
		if p == nil {
			// Released halfway: finish it.
			lk.Unpin()
			lk.Close()
			continue
		}
		p.link, p.adopted = lk, true
	}
	return nil
}

// OpenNetns implements Dataplane.
func (l *Loader) OpenNetns(path string) (Netns, error) { return OpenNetns(path) }

// Enrolled implements Dataplane.
func (l *Loader) Enrolled() (map[uint64]PodConfig, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[uint64]PodConfig, len(l.pods))
	for c, p := range l.pods {
		out[c] = p.cfg
	}
	return out, nil
}

// Enrol implements Dataplane.
func (l *Loader) Enrol(ns Netns, cfg PodConfig, inbound []*os.File) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.Normalize()
	l.mu.Lock()
	defer l.mu.Unlock()
	c := ns.Cookie
	p := l.pods[c]
	if p == nil {
		p = &podState{}
	}
	if err := l.syncExclusions(c, p.cfg, cfg); err != nil {
		return err
	}
	p.cfg = cfg
	l.pods[c] = p // known from here on, so that Release cleans up after a failure
	if inbound != nil {
		fams, err := l.setInbound(c, inbound)
		if err != nil {
			return err
		}
		for _, old := range p.families {
			if !containsU32(fams, old) {
				l.objs.WrInbound.Delete(bpf.CaptureInboundKey{Netns: c, Family: old})
			}
		}
		p.families = fams
	}
	if err := l.syncLookupLink(ns, p); err != nil {
		return err
	}
	// Last: switch capture on (or keep it on).
	if err := l.objs.WrPods.Put(c, bpf.CapturePodCfg{Flags: bpf.PodOutbound | bpf.PodInbound}); err != nil {
		return fmt.Errorf("loader: enrol netns %d: %w", c, err)
	}
	return nil
}

func containsU32(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (l *Loader) syncExclusions(c uint64, old, cfg PodConfig) error {
	type pk = bpf.CapturePortKey
	oldP, newP := map[pk]bool{}, map[pk]bool{}
	for _, p := range old.ExcludeOutboundPorts {
		oldP[pk{Netns: c, Port: p, Dir: bpf.DirOutbound}] = true
	}
	for _, p := range old.ExcludeInboundPorts {
		oldP[pk{Netns: c, Port: p, Dir: bpf.DirInbound}] = true
	}
	for _, p := range cfg.ExcludeOutboundPorts {
		newP[pk{Netns: c, Port: p, Dir: bpf.DirOutbound}] = true
	}
	for _, p := range cfg.ExcludeInboundPorts {
		newP[pk{Netns: c, Port: p, Dir: bpf.DirInbound}] = true
	}
	for k := range newP {
		if err := l.objs.WrPorts.Put(k, uint8(1)); err != nil {
			return fmt.Errorf("loader: exclude port %d of netns %d: %w", k.Port, c, err)
		}
	}
	for k := range oldP {
		if !newP[k] {
			if err := l.objs.WrPorts.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("loader: %w", err)
			}
		}
	}
	oldC, newC := map[bpf.CaptureCidrKey]bool{}, map[bpf.CaptureCidrKey]bool{}
	for _, p := range old.ExcludeOutboundCIDRs {
		oldC[cidrKey(c, p)] = true
	}
	for _, p := range cfg.ExcludeOutboundCIDRs {
		newC[cidrKey(c, p)] = true
	}
	for k := range newC {
		if err := l.objs.WrCidrs.Put(k, uint8(1)); err != nil {
			return fmt.Errorf("loader: exclude CIDR of netns %d: %w", c, err)
		}
	}
	for k := range oldC {
		if !newC[k] {
			if err := l.objs.WrCidrs.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("loader: %w", err)
			}
		}
	}
	return nil
}

// cidrKey encodes a prefix of one pod as wr_cidrs key: 64 bits of netns
// cookie, then the address in IPv6 form.
func cidrKey(c uint64, p netip.Prefix) bpf.CaptureCidrKey {
	var k bpf.CaptureCidrKey
	bits := p.Bits()
	a := p.Addr()
	if a.Is4() {
		bits += 96
	}
	k.Prefixlen = uint32(64 + bits)
	putNative64(k.Netns[:], c)
	k.Addr = a.As16()
	return k
}

func decodeCIDRKey(k bpf.CaptureCidrKey) (uint64, netip.Prefix) {
	c := native64(k.Netns[:])
	a := netip.AddrFrom16(k.Addr)
	bits := int(k.Prefixlen) - 64
	if a.Is4In6() && bits >= 96 {
		return c, netip.PrefixFrom(a.Unmap(), bits-96)
	}
	return c, netip.PrefixFrom(a, bits)
}

// setInbound installs ztunnel's inbound listeners of netns c and returns the
// families they serve.
func (l *Loader) setInbound(c uint64, files []*os.File) ([]uint32, error) {
	byFam := map[uint32]*os.File{}
	var dual *os.File
	for _, f := range files {
		fam, v6only, err := listenerFamily(f)
		if err != nil {
			return nil, err
		}
		switch {
		case fam == bpf.AFInet:
			byFam[bpf.AFInet] = f
		case v6only:
			byFam[bpf.AFInet6] = f
		default:
			dual = f
		}
	}
	if dual != nil {
		for _, fam := range []uint32{bpf.AFInet, bpf.AFInet6} {
			if byFam[fam] == nil {
				byFam[fam] = dual
			}
		}
	}
	var fams []uint32
	for fam, f := range byFam {
		k := bpf.CaptureInboundKey{Netns: c, Family: fam}
		// Not f.Fd(): it would switch the socket, shared with ztunnel, to
		// blocking mode.
		if err := withFd(f, func(fd int) error { return l.objs.WrInbound.Put(k, uint64(fd)) }); err != nil {
			return nil, fmt.Errorf("loader: install inbound listener of netns %d: %w", c, err)
		}
		fams = append(fams, fam)
	}
	return fams, nil
}

// withFd runs fn with f's descriptor, leaving its blocking mode alone.
func withFd(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// listenerFamily checks that f is a listening TCP (not MPTCP) socket and
// returns its family and IPV6_V6ONLY.
func listenerFamily(f *os.File) (uint32, bool, error) {
	var (
		fam, proto, acc int
		v6only          bool
		err             error
	)
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, false, fmt.Errorf("loader: inbound listener: %w", err)
	}
	cerr := rc.Control(func(fd uintptr) {
		if fam, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil {
			return
		}
		if proto, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil {
			return
		}
		if acc, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil {
			return
		}
		if fam == unix.AF_INET6 {
			var v int
			if v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err == nil {
				v6only = v == 1
			}
		}
	})
	if cerr != nil {
		err = cerr
	}
	if err != nil {
		return 0, false, fmt.Errorf("loader: inbound listener: %w", err)
	}
	switch {
	case proto == unix.IPPROTO_MPTCP:
		return 0, false, errors.New("loader: inbound listener is MPTCP, which cannot enter a SOCKMAP (use net.ListenConfig with SetMultipathTCP(false))")
	case proto != unix.IPPROTO_TCP:
		return 0, false, fmt.Errorf("loader: inbound listener has protocol %d, want TCP", proto)
	case acc != 1:
		return 0, false, errors.New("loader: inbound listener is not listening")
	}
	return uint32(fam), v6only, nil
}

// syncLookupLink attaches the pod's sk_lookup program, or refreshes an
// adopted one with the program this agent loaded.
func (l *Loader) syncLookupLink(ns Netns, p *podState) error {
	if p.link != nil && !p.adopted {
		return nil
	}
	prog, err := l.loadLookup(ns.Cookie)
	if err != nil {
		return err
	}
	defer prog.Close()
	if p.link != nil {
		if err := p.link.Update(prog); err == nil {
			p.adopted = false
			return nil
		}
		// The namespace of the adopted link is gone or the link is
		// defunct: attach afresh.
		p.link.Unpin()
		p.link.Close()
		p.link = nil
	}
	if ns.File == nil {
		return fmt.Errorf("loader: enrol netns %d: no namespace handle", ns.Cookie)
	}
	lk, err := link.AttachNetNs(int(ns.File.Fd()), prog)
	if err != nil {
		return classifyLoadErr("attaching sk_lookup to pod netns", err)
	}
	path := l.podPin(ns.Cookie)
	os.Remove(path)
	if err := lk.Pin(path); err != nil {
		lk.Close()
		return fmt.Errorf("loader: pin sk_lookup link: %w", err)
	}
	p.link, p.adopted = lk, false
	return nil
}

// loadLookup loads an sk_lookup program instance for one netns: sk_lookup
// programs cannot call bpf_get_netns_cookie, so the cookie is a constant.
func (l *Loader) loadLookup(cookie uint64) (*ebpf.Program, error) {
	spec := l.spec.Copy()
	if err := spec.Variables[bpf.VarLookupNetns].Set(cookie); err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	var o struct {
		P *ebpf.Program `ebpf:"wr_sk_lookup"`
	}
	err := spec.LoadAndAssign(&o, &ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{
			"wr_pods":      l.objs.WrPods,
			"wr_ports":     l.objs.WrPorts,
			"wr_probe_src": l.objs.WrProbeSrc,
			"wr_inbound":   l.objs.WrInbound,
			"wr_stats":     l.objs.WrStats,
		},
		Cache: l.btfCache,
	})
	if err != nil {
		return nil, classifyLoadErr("loading sk_lookup program", err)
	}
	return o.P, nil
}

// Release implements Dataplane.
func (l *Loader) Release(c uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.objs.WrPods.Delete(c); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("loader: release netns %d: %w", c, err)
	}
	p := l.pods[c]
	if p == nil {
		p = &podState{}
	}
	if p.link != nil {
		p.link.Unpin()
		p.link.Close()
	} else if lk, err := link.LoadPinnedLink(l.podPin(c), nil); err == nil {
		lk.Unpin()
		lk.Close()
	}
	if err := l.syncExclusions(c, p.cfg, PodConfig{}); err != nil {
		return err
	}
	for _, fam := range []uint32{bpf.AFInet, bpf.AFInet6} {
		l.objs.WrInbound.Delete(bpf.CaptureInboundKey{Netns: c, Family: fam})
	}
	delete(l.pods, c)
	return nil
}

// SetSkipCgroups implements Dataplane.
func (l *Loader) SetSkipCgroups(ids []uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	want := map[uint64]bool{}
	for _, id := range ids {
		want[id] = true
		if err := l.objs.WrSkipCg.Put(id, uint8(1)); err != nil {
			return fmt.Errorf("loader: skip cgroup %d: %w", id, err)
		}
	}
	var (
		id  uint64
		one uint8
		del []uint64
	)
	it := l.objs.WrSkipCg.Iterate()
	for it.Next(&id, &one) {
		if !want[id] {
			del = append(del, id)
		}
	}
	for _, id := range del {
		l.objs.WrSkipCg.Delete(id)
	}
	return it.Err()
}

// SetProbeSources implements Dataplane.
func (l *Loader) SetProbeSources(addrs []netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	want := map[bpf.CaptureAddr16]bool{}
	for _, a := range addrs {
		k := addr16(a)
		want[k] = true
		if err := l.objs.WrProbeSrc.Put(k, uint8(1)); err != nil {
			return fmt.Errorf("loader: probe source %v: %w", a, err)
		}
	}
	var (
		k   bpf.CaptureAddr16
		one uint8
		del []bpf.CaptureAddr16
	)
	it := l.objs.WrProbeSrc.Iterate()
	for it.Next(&k, &one) {
		if !want[k] {
			del = append(del, k)
		}
	}
	for _, k := range del {
		l.objs.WrProbeSrc.Delete(k)
	}
	return it.Err()
}

// addr16 encodes an address as the kernel side keeps it: IPv6 form, IPv4
// mapped, network byte order.
func addr16(a netip.Addr) bpf.CaptureAddr16 {
	b := a.As16()
	var k bpf.CaptureAddr16
	for i := range 4 {
		k.W[i] = native32(b[i*4 : i*4+4])
	}
	return k
}

// OriginalDst implements Dataplane: a read-only handle on wr_odst.
func (l *Loader) OriginalDst() (*os.File, error) {
	m, err := ebpf.LoadPinnedMap(l.pin("wr_odst"), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("loader: open wr_odst read-only: %w", err)
	}
	defer m.Close()
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loader: dup wr_odst: %w", err)
	}
	return os.NewFile(uintptr(fd), "wr_odst"), nil
}

// Stats implements Dataplane.
func (l *Loader) Stats() (map[string]uint64, error) {
	out := map[string]uint64{}
	for i, name := range bpf.StatNames {
		var per []uint64
		if err := l.objs.WrStats.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("loader: stats: %w", err)
		}
		var sum uint64
		for _, v := range per {
			sum += v
		}
		out[name] = sum
	}
	return out, nil
}

// Cgroup returns the absolute cgroup v2 directory the programs attach to.
func (l *Loader) Cgroup() string { return l.cgroup }

// Close implements Dataplane: pinned programs, maps and links stay, and
// with them capture.
func (l *Loader) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, lk := range l.links {
		lk.Close()
	}
	l.links = map[string]link.Link{}
	for _, p := range l.pods {
		if p.link != nil {
			p.link.Close()
			p.link = nil
		}
	}
	l.objs.Connect4.Close()
	l.objs.Connect6.Close()
	l.objs.SockOps.Close()
	l.objs.Getsockopt.Close()
	return l.objs.CaptureMaps.Close()
}

// Uninstall removes capture entirely: it detaches every program of this
// PinPath, removes all pins and closes the Loader.
func (l *Loader) Uninstall() error {
	l.mu.Lock()
	for _, lk := range l.links {
		lk.Unpin()
	}
	for _, p := range l.pods {
		if p.link != nil {
			p.link.Unpin()
		}
	}
	l.mu.Unlock()
	l.Close()
	return RemovePins(l.opts.PinPath)
}

// RemovePins removes a PinPath directory left by an agent (detaching what
// only the pins kept attached).
func RemovePins(pinPath string) error {
	if err := os.RemoveAll(pinPath); err != nil {
		return fmt.Errorf("loader: remove %s: %w", pinPath, err)
	}
	return nil
}
