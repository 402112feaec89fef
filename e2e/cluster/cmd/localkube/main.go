package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/warren-mesh/warren/e2e/cluster"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func usage() {
	fmt.Fprintf(os.Stderr, `usage: localkube [flags] up|down|status|load-image [args]

  up          start the cluster (builds Kubernetes once, installs Debian packages)
  down        remove everything up created
  status      show processes, nodes and pods
  load-image  import image tarballs, build one from Go packages (-ref, -go), or build the
              Gateway API conformance images (-conformance), into every node

flags:
`)
	flag.PrintDefaults()
}

func main() {
	var o cluster.Options
	var jsonLog bool
	fs := flag.CommandLine
	fs.StringVar(&o.Name, "name", cluster.DefaultName, "cluster name: prefix of every netns, link, cgroup and node name")
	fs.StringVar(&o.StateDir, "state-dir", "", "state directory (default "+cluster.DefaultStateDir+"[-<name>])")
	fs.IntVar(&o.Nodes, "nodes", cluster.DefaultNodes, "number of nodes (up)")
	fs.BoolVar(&o.SkipDeps, "skip-deps", false, "do not run hack/deps.sh cluster (up)")
	fs.BoolVar(&o.SkipBuild, "skip-build", false, "do not run hack/kube-bins.sh and hack/image-bins.sh (up)")
	dns := fs.Bool("dns", true, "up: deploy cluster DNS (CoreDNS as kube-system/kube-dns on the 10th Service address)")
	fs.BoolVar(&o.ConformanceImages, "conformance-images", false, "up: also import the Gateway API conformance images (echo-advanced, echo-basic, coredns)")
	fs.IntVar(&o.Verbosity, "v", 0, "klog verbosity of the Kubernetes components (0 means 1)")
	fs.BoolVar(&jsonLog, "json", false, "log JSON")
	ref := fs.String("ref", "", "load-image: name:tag of an image to build from -go packages")
	conformance := fs.Bool("conformance", false, "load-image: build and import the Gateway API conformance images")
	var gopkgs multi
	fs.Var(&gopkgs, "go", "load-image: main package to put in the image as /usr/local/bin/<base> (repeatable)")
	busybox := fs.Bool("busybox", false, "load-image: add busybox-static as /bin/sh")
	entry := fs.String("entrypoint", "", "load-image: entrypoint (default the first -go binary)")
	fs.Usage = usage
	fs.Parse(os.Args[1:])
	args := fs.Args()
	if len(args) == 0 {
		usage()
		os.Exit(2)
	}
	cmd := args[0]
	fs.Parse(args[1:]) // flags after the subcommand
	rest := fs.Args()
	o.SkipDNS = !*dns

	var h slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	if jsonLog {
		h = slog.NewJSONHandler(os.Stderr, nil)
	}
	log := slog.New(h)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	switch cmd {
	case "up":
		err = up(ctx, log, o)
	case "down":
		t := time.Now()
		if err = cluster.Down(ctx, o); err == nil {
			log.Info("cluster down", "name", o.Name, "took", time.Since(t).Round(time.Millisecond))
		}
	case "status":
		err = status(ctx, o)
	case "load-image":
		err = loadImage(ctx, log, o, rest, *ref, gopkgs, *busybox, *entry, *conformance)
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		log.Error(cmd+" failed", "err", err)
		os.Exit(1)
	}
}

func up(ctx context.Context, log *slog.Logger, o cluster.Options) error {
	o.OnPhase = func(phase string, took time.Duration) {
		log.Info("phase done", "phase", phase, "took", took.Round(time.Millisecond))
	}
	log.Info("bringing the cluster up", "name", o.Name, "nodes", o.Nodes)
	c, err := cluster.Up(ctx, o)
	if err != nil {
		log.Error("up failed: the partial cluster is left for inspection; `localkube down` removes it", "name", o.Name)
		return err
	}
	args := []any{"name", c.Name(), "total", c.Timings.Total.Round(time.Millisecond), "logs", c.LogDir()}
	if ip := c.DNSIP(); ip.IsValid() {
		args = append(args, "dns", ip)
	}
	log.Info("cluster up", args...)
	fmt.Printf("export KUBECONFIG=%s\n", c.Kubeconfig())
	return nil
}

func status(ctx context.Context, o cluster.Options) error {
	c, err := cluster.Open(o)
	if err != nil {
		return err
	}
	s, err := c.Status(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "PROCESS\tPID\tALIVE\tRSS\tNODE CGROUP (PIDS, RSS)")
	for _, p := range s.Processes {
		tree := ""
		if p.TreePIDs > 0 {
			tree = fmt.Sprintf("%d, %d MiB", p.TreePIDs, p.TreeRSSKiB/1024)
		}
		fmt.Fprintf(w, "%s\t%d\t%t\t%d MiB\t%s\n", p.Name, p.PID, p.Alive, p.RSSKiB/1024, tree)
	}
	w.Flush()
	fmt.Println()
	if s.APIError != "" {
		fmt.Printf("apiserver: %s\n", s.APIError)
		return nil
	}
	fmt.Fprintln(w, "NODE\tREADY\tIP\tPOD CIDR\tVERSION\tTAINTS")
	for _, n := range s.Nodes {
		fmt.Fprintf(w, "%s\t%t\t%s\t%s\t%s\t%s\n", n.Name, n.Ready, n.IP, n.PodCIDR, n.Version, strings.Join(n.Taints, ","))
	}
	w.Flush()
	fmt.Println()
	fmt.Fprintln(w, "NAMESPACE\tPOD\tNODE\tPHASE\tREADY\tRESTARTS\tIP")
	for _, p := range s.Pods {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%t\t%d\t%s\n", p.Namespace, p.Name, p.Node, p.Phase, p.Ready, p.Restarts, p.IP)
	}
	w.Flush()
	fmt.Printf("\nexport KUBECONFIG=%s\n", c.Kubeconfig())
	return nil
}

func loadImage(ctx context.Context, log *slog.Logger, o cluster.Options, tarballs []string, ref string, gopkgs []string, busybox bool, entry string, conformance bool) error {
	c, err := cluster.Open(o)
	if err != nil {
		return err
	}
	if conformance {
		t := time.Now()
		if err := c.LoadConformanceImages(ctx); err != nil {
			return err
		}
		log.Info("conformance images built and loaded", "images", cluster.ConformanceImages(), "took", time.Since(t).Round(time.Millisecond))
	}
	if ref != "" {
		if len(gopkgs) == 0 {
			return fmt.Errorf("load-image: -ref %s needs at least one -go package", ref)
		}
		gi := cluster.GoImage{Ref: ref, Binaries: map[string]string{}, Busybox: busybox}
		for _, p := range gopkgs {
			bin := "/usr/local/bin/" + path.Base(p)
			gi.Binaries[bin] = p
			if gi.Entrypoint == nil {
				gi.Entrypoint = []string{bin}
			}
		}
		if entry != "" {
			gi.Entrypoint = strings.Fields(entry)
		}
		t := time.Now()
		if err := c.BuildAndLoad(ctx, gi); err != nil {
			return err
		}
		log.Info("image built and loaded", "ref", ref, "nodes", len(c.Nodes()), "took", time.Since(t).Round(time.Millisecond))
	}
	if len(tarballs) > 0 {
		if err := c.LoadImage(ctx, tarballs...); err != nil {
			return err
		}
		log.Info("images loaded", "tarballs", tarballs, "nodes", len(c.Nodes()))
	}
	if ref == "" && len(tarballs) == 0 && !conformance {
		return fmt.Errorf("load-image: name tarballs, -ref with -go, or -conformance")
	}
	return nil
}
