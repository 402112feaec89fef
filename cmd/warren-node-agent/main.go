// Command warren-node-agent is Warren's node agent (one per node, host
// network, privileged: CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN). It loads
// and pins the capture programs (redirect/loader), watches Namespaces and
// its node's Pods, captures the enrolled ones, hands them to the node's
// ztunnel over redirect/nodeproto and answers the warren-cni plugin. It
// refuses to start — it never runs without capture — when the kernel,
// capabilities or cgroup v2 fall short, naming what is missing.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/warren-mesh/warren/redirect"
	"github.com/warren-mesh/warren/redirect/agent"
	"github.com/warren-mesh/warren/redirect/cni"
	"github.com/warren-mesh/warren/redirect/loader"
	"github.com/warren-mesh/warren/redirect/nodeproto"
)

type options struct {
	nodeName         string
	kubeconfig       string
	inCluster        bool
	cgroup           string
	pinPath          string
	ztunnelSocket    string
	cniSocket        string
	probeSources     string
	ztunnelMark      uint
	attachGetsockopt bool
	resync           time.Duration
	debugAddr        string
	logFormat        string
	uninstall        bool
}

func main() {
	var o options
	flag.StringVar(&o.nodeName, "node-name", "", "this node's name (required): only its pods are captured")
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file")
	flag.BoolVar(&o.inCluster, "in-cluster", false, "use the pod's in-cluster config")
	flag.StringVar(&o.cgroup, "cgroup", "kubepods", "cgroup v2 directory of the node's pods (kubelet cgroupRoot/kubepods), absolute or relative to the cgroup2 mount; the programs attach there once")
	flag.StringVar(&o.pinPath, "pin-path", "", "bpffs directory for maps, programs and links (default /sys/fs/bpf/warren/<node-name>)")
	flag.StringVar(&o.ztunnelSocket, "ztunnel-socket", nodeproto.DefaultSocket, "unix socket ztunnel connects to (nodeproto)")
	flag.StringVar(&o.cniSocket, "cni-socket", cni.DefaultSocket, "unix socket the warren-cni plugin calls")
	flag.StringVar(&o.probeSources, "probe-sources", "", "comma-separated source addresses never steered inbound (kubelet probes); default: every address of this host network namespace")
	flag.UintVar(&o.ztunnelMark, "ztunnel-mark", 0, "also exempt sockets with this SO_MARK from capture (0: only ztunnel's cgroup)")
	flag.BoolVar(&o.attachGetsockopt, "attach-getsockopt", false, "also answer getsockopt(SO_ORIGINAL_DST) with a cgroup/getsockopt program (ztunnel must run below -cgroup; costs every pod's getsockopt)")
	flag.DurationVar(&o.resync, "resync", 5*time.Second, "retry pods that did not converge this often")
	flag.StringVar(&o.debugAddr, "debug-addr", "127.0.0.1:15030", "debug endpoint (/debug/redirect, /healthz); empty disables")
	flag.StringVar(&o.logFormat, "log-format", "text", "text or json")
	flag.BoolVar(&o.uninstall, "uninstall", false, "remove capture from this node (detach everything pinned under -pin-path) and exit")
	flag.Parse()

	var h slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	if o.logFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, nil)
	}
	log := slog.New(h)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		if errors.Is(err, redirect.ErrNotSupported) {
			log.Error("refusing to start: traffic capture is not possible on this node, and Warren never runs without it", "err", err)
		} else {
			log.Error("node agent failed", "err", err)
		}
		os.Exit(1)
	}
}

func (o *options) validate() error {
	if o.nodeName == "" && !o.uninstall {
		return errors.New("-node-name is required")
	}
	if o.pinPath == "" {
		if o.nodeName == "" {
			return errors.New("-pin-path or -node-name is required")
		}
		o.pinPath = filepath.Join("/sys/fs/bpf/warren", o.nodeName)
	}
	return nil
}

func parseAddrs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("probe source %q: %w", f, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// hostAddrs returns every non-loopback address of this network namespace:
// where kubelet's probes come from.
func hostAddrs() ([]netip.Addr, error) {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, ifa := range ifas {
		if p, err := netip.ParsePrefix(ifa.String()); err == nil && !p.Addr().IsLoopback() && !p.Addr().IsLinkLocalUnicast() {
			out = append(out, p.Addr())
		}
	}
	return out, nil
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	if err := o.validate(); err != nil {
		return err
	}
	lopts := loader.Options{Cgroup: o.cgroup, PinPath: o.pinPath, ZtunnelMark: uint32(o.ztunnelMark), AttachGetsockopt: o.attachGetsockopt}
	if o.uninstall {
		// Detaching needs no program: removing the pins drops the last
		// references of links that no process holds.
		log.Info("removing capture", "pin_path", o.pinPath)
		return loader.RemovePins(o.pinPath)
	}
	probes, err := parseAddrs(o.probeSources)
	if err != nil {
		return err
	}
	if o.probeSources == "" {
		if probes, err = hostAddrs(); err != nil {
			return err
		}
	}
	l, err := loader.Open(lopts)
	if err != nil {
		return err
	}
	defer l.Close() // pins stay: capture outlives this process
	log.Info("capture programs attached", "cgroup", l.Cgroup(), "pin_path", o.pinPath)
	var cfg *rest.Config
	switch {
	case o.inCluster:
		cfg, err = rest.InClusterConfig()
	case o.kubeconfig != "":
		cfg, err = clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	default:
		err = errors.New("-kubeconfig or -in-cluster is required")
	}
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}

	var a *agent.Agent
	zsrv, err := nodeproto.Listen(nodeproto.ServerOptions{
		Path: o.ztunnelSocket, Node: o.nodeName, OrigDst: l.OriginalDst,
		OnConnect: func(ctx context.Context, c *nodeproto.Conn) error {
			log.Info("ztunnel connected", "pid", c.PeerPID())
			err := a.Snapshot(ctx, c)
			if err != nil {
				log.Error("ztunnel snapshot failed", "err", err)
			}
			return err
		},
		OnDisconnect: func(c *nodeproto.Conn) { log.Warn("ztunnel disconnected", "err", c.Err()) },
	})
	if err != nil {
		return err
	}
	defer zsrv.Close()
	a, err = agent.New(agent.Options{Dataplane: l, Ztunnel: zsrv, ProbeSources: probes})
	if err != nil {
		return err
	}
	defer a.Close()
	c := agent.NewController(agent.ControllerOptions{
		Agent: a, NodeName: o.nodeName, Resync: o.resync, GetPod: agent.GetPodFunc(client),
		OnError: func(err error) { log.Warn("reconcile", "err", err) },
	})
	csrv, err := cni.Listen(o.cniSocket, c)
	if err != nil {
		return err
	}
	defer csrv.Close()

	errc := make(chan error, 5)
	go func() { errc <- zsrv.Serve(ctx) }()
	go func() { errc <- csrv.Serve() }()
	go func() { errc <- agent.Watch(ctx, client, c, 10*time.Minute) }()
	go func() { errc <- c.Run(ctx) }()
	if o.debugAddr != "" {
		go func() { errc <- serveDebug(ctx, o.debugAddr, a, l) }()
	}
	log.Info("node agent running", "node", o.nodeName, "ztunnel_socket", o.ztunnelSocket, "cni_socket", o.cniSocket, "probe_sources", probes)
	select {
	case <-ctx.Done():
		log.Info("stopping; capture stays pinned for the next agent")
		return nil
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}

func serveDebug(ctx context.Context, addr string, a *agent.Agent, l *loader.Loader) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/debug/redirect", func(w http.ResponseWriter, _ *http.Request) {
		type pod struct {
			UID, Namespace, Name string
			NetnsCookie          uint64
			Enrolled             bool
			Error                string `json:",omitempty"`
		}
		var pods []pod
		for _, s := range a.Status() {
			p := pod{UID: s.UID, Namespace: s.Namespace, Name: s.Name, NetnsCookie: s.NetnsCookie, Enrolled: s.Enrolled}
			if s.Err != nil {
				p.Error = s.Err.Error()
			}
			pods = append(pods, p)
		}
		stats, _ := l.Stats()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"pods": pods, "stats": stats})
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
