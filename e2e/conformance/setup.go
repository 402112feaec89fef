package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/warren-mesh/warren/e2e/cluster"
)

// Names Warren's waypoints use (DESIGN §3).
const (
	WaypointName       = "waypoint"
	WaypointClass      = "warren-waypoint"
	WaypointPort       = 15008
	WaypointProtocol   = "HBONE"
	WaypointListener   = "mesh"
	LabelWaypointFor   = "warren.io/waypoint-for"
	GatewayAPIModule   = "sigs.k8s.io/gateway-api"
	experimentalCRDDir = "config/crd/experimental"
)

// Options configure Setup.
type Options struct {
	// Cluster names the local cluster to reuse, or to bring up (with cluster
	// DNS and the conformance images) when none runs. Zero: the default
	// cluster of `localkube up`.
	Cluster cluster.Options
	// RepoDir is the Warren repository. Default: found from the working
	// directory (cluster.FindRepo).
	RepoDir string
	// InstallDir holds Warren's install manifests; every YAML file below it
	// is applied when it exists. Default <RepoDir>/manifests/install.
	InstallDir string
	// SkipInstall leaves Warren out even when InstallDir exists: a baseline
	// run of the suite against plain Kubernetes.
	SkipInstall bool
	// Namespaces get a waypoint each once Warren is installed: the mesh test
	// namespaces.
	Namespaces []string
	// NamespaceLabels are set on those namespaces (the labels the suite is
	// told to put on its namespaces with --namespace-labels).
	NamespaceLabels map[string]string
	// Timeouts: Warren's workloads to roll out after install, the waypoints
	// to be Programmed (all of them). Defaults 5 min and 3 min.
	InstallTimeout, WaypointTimeout time.Duration
	// Logf reports progress (t.Logf in the test). Default: discard.
	Logf func(format string, args ...any)
}

// Env is a prepared cluster.
type Env struct {
	Cluster *cluster.Cluster
	// Started is set when Setup brought the cluster up (Teardown then
	// removes it).
	Started bool
	// Installed is set when manifests/install existed and was applied;
	// InstallErr says why Warren's workloads did not all become ready
	// (the suite still runs, and then fails on its own).
	Installed  bool
	InstallErr error
	// Images are the warren.local images built from ./cmd and loaded for
	// the install.
	Images []string
	// Waypoints are the waypoint Gateways created, as namespace/name, and
	// which of them reported Programmed=True.
	Waypoints, Programmed []string
	// Steps records how long each step took, in order.
	Steps []Step

	up cluster.Options // what Setup brought up, for Teardown
}

// Step is one timed step of Setup.
type Step struct {
	Name string
	Took time.Duration
}

// Setup prepares the cluster for the conformance suite; see the package
// doc. On error the returned Env (when not nil) still says what to tear
// down.
func Setup(ctx context.Context, o Options) (*Env, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if o.RepoDir == "" {
		var err error
		if o.RepoDir, err = cluster.FindRepo(); err != nil {
			return nil, err
		}
	}
	if o.InstallDir == "" {
		o.InstallDir = filepath.Join(o.RepoDir, "manifests", "install")
	}
	if o.InstallTimeout == 0 {
		o.InstallTimeout = 5 * time.Minute
	}
	if o.WaypointTimeout == 0 {
		o.WaypointTimeout = 3 * time.Minute
	}
	env := &Env{}
	step := func(name string, f func() error) error {
		t := time.Now()
		err := f()
		env.Steps = append(env.Steps, Step{name, time.Since(t)})
		if err == nil {
			logf("setup: %s done in %s", name, time.Since(t).Round(time.Millisecond))
		}
		return err
	}

	// The cluster: reuse a running one, or bring one up.
	co := o.Cluster
	co.RepoDir = o.RepoDir
	if c, err := cluster.Open(co); err == nil {
		if err := step("reuse cluster "+c.Name()+" + conformance images", func() error { return reuse(ctx, c) }); err != nil {
			return nil, err
		}
		env.Cluster = c
	} else {
		logf("setup: no running cluster (%v): bringing one up", err)
		co.ConformanceImages = true
		co.SkipDNS = false
		co.OnPhase = func(p string, d time.Duration) { logf("setup: cluster up: phase %s %s", p, d.Round(time.Millisecond)) }
		env.Started, env.up = true, co // a failed Up leaves a partial cluster to remove too
		err := step("cluster up", func() error {
			c, err := cluster.Up(ctx, co)
			env.Cluster = c
			return err
		})
		if err != nil {
			return env, err
		}
	}
	cfg, err := env.Cluster.RESTConfig()
	if err != nil {
		return env, err
	}
	a, err := NewApplier(cfg)
	if err != nil {
		return env, err
	}

	if err := step("gateway API CRDs", func() error { return installCRDs(ctx, o.RepoDir, a) }); err != nil {
		return env, err
	}
	if err := step("previous test namespaces gone", func() error { return waitNamespacesGone(ctx, a, o.Namespaces, 3*time.Minute) }); err != nil {
		return env, err
	}
	if o.SkipInstall {
		logf("setup: install skipped (baseline run): Warren is NOT installed and no waypoints are created; the suite runs against plain Kubernetes (kube-proxy)")
		return env, nil
	}
	if _, err := os.Stat(o.InstallDir); errors.Is(err, os.ErrNotExist) {
		logf("setup: %s does not exist: Warren is NOT installed and no waypoints are created; the suite runs against plain Kubernetes (kube-proxy)", o.InstallDir)
		return env, nil
	}
	var objs []*unstructured.Unstructured
	err = step("Warren images", func() error {
		var err error
		if objs, err = ReadManifests(o.InstallDir); err != nil {
			return err
		}
		if len(objs) == 0 {
			return fmt.Errorf("conformance: %s holds no manifests", o.InstallDir)
		}
		env.Images, err = buildWarrenImages(ctx, env.Cluster, o.RepoDir, objs, logf)
		return err
	})
	if err != nil {
		return env, err
	}
	err = step("install Warren ("+o.InstallDir+")", func() error {
		if err := a.Apply(ctx, objs); err != nil {
			return err
		}
		logf("setup: applied %d objects from %s", len(objs), o.InstallDir)
		env.Installed = true
		if err := a.WaitWorkloads(ctx, objs, o.InstallTimeout); err != nil {
			env.InstallErr = err
			logf("setup: WARNING: Warren's workloads are not ready, running the suite anyway: %v", err)
		}
		return nil
	})
	if err != nil {
		return env, err
	}
	err = step("waypoints", func() error {
		for _, ns := range o.Namespaces {
			if err := a.Apply(ctx, []*unstructured.Unstructured{namespaceObject(ns, o.NamespaceLabels), WaypointObject(ns)}); err != nil {
				return err
			}
			env.Waypoints = append(env.Waypoints, ns+"/"+WaypointName)
		}
		deadline := time.Now().Add(o.WaypointTimeout) // one deadline for all of them
		for _, ns := range o.Namespaces {
			if err := a.waitProgrammed(ctx, ns, WaypointName, max(time.Until(deadline), time.Second)); err != nil {
				// The suite then fails on its own; say why here.
				logf("setup: WARNING: %v", err)
				continue
			}
			env.Programmed = append(env.Programmed, ns+"/"+WaypointName)
		}
		return nil
	})
	return env, err
}

// warrenImageRE matches the local images Warren's manifests name, anywhere
// (image fields, or flags such as -waypoint-image=...).
var warrenImageRE = regexp.MustCompile(`warren\.local/([a-z0-9][a-z0-9-]*):[A-Za-z0-9][A-Za-z0-9._-]*`)

// WarrenImages returns the warren.local/<name>:<tag> references in objs,
// sorted, without the cluster's own images (pause, echo, coredns).
func WarrenImages(objs []*unstructured.Unstructured) []string {
	own := map[string]bool{cluster.PauseImage: true, cluster.EchoImage: true, cluster.CoreDNSImage: true}
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case string:
			for _, ref := range warrenImageRE.FindAllString(x, -1) {
				if !own[ref] {
					seen[ref] = true
				}
			}
		}
	}
	for _, o := range objs {
		walk(o.Object)
	}
	out := make([]string, 0, len(seen))
	for ref := range seen {
		out = append(out, ref)
	}
	sort.Strings(out)
	return out
}

// buildWarrenImages builds every warren.local/<name>:<tag> image the install
// manifests name from the main package ./cmd/<name> — as `localkube
// load-image -ref warren.local/<name>:<tag> -go ./cmd/<name> -busybox` does:
// the binary at /usr/local/bin/<name> as entrypoint, busybox for a shell —
// and loads it into every node (a registry-less cluster cannot pull them).
// An image without a ./cmd/<name> is reported and left out.
func buildWarrenImages(ctx context.Context, c *cluster.Cluster, repoDir string, objs []*unstructured.Unstructured, logf func(string, ...any)) ([]string, error) {
	var built []string
	for _, ref := range WarrenImages(objs) {
		name := warrenImageRE.FindStringSubmatch(ref)[1]
		pkg := "./cmd/" + name
		if _, err := os.Stat(filepath.Join(repoDir, "cmd", name)); err != nil {
			logf("setup: WARNING: the install names %s but there is no %s to build it from: pods using it will not start", ref, pkg)
			continue
		}
		bin := "/usr/local/bin/" + name
		t := time.Now()
		err := c.BuildAndLoad(ctx, cluster.GoImage{
			Ref:        ref,
			Binaries:   map[string]string{bin: pkg},
			Busybox:    true,
			Entrypoint: []string{bin},
		})
		if err != nil {
			return built, fmt.Errorf("conformance: image %s: %w", ref, err)
		}
		logf("setup: built and loaded %s from %s in %s", ref, pkg, time.Since(t).Round(time.Millisecond))
		built = append(built, ref)
	}
	return built, nil
}

// Teardown brings the cluster down when Setup brought it (or tried to
// bring it) up; a reused cluster stays.
func (e *Env) Teardown(ctx context.Context) error {
	if e == nil || !e.Started {
		return nil
	}
	o := e.up
	o.OnPhase = nil
	return cluster.Down(ctx, o)
}

// reuse checks that a running cluster can serve the suite and imports the
// conformance images into it.
func reuse(ctx context.Context, c *cluster.Cluster) error {
	cs, err := c.Client()
	if err != nil {
		return err
	}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cs.CoreV1().Nodes().List(tctx, metav1.ListOptions{}); err != nil {
		return fmt.Errorf("conformance: cluster %s is recorded as up but its apiserver does not answer (%v): run `localkube down` first", c.Name(), err)
	}
	if !c.DNSIP().IsValid() {
		return fmt.Errorf("conformance: cluster %s runs without cluster DNS (up -dns=false), which the mesh tests need (the echo client resolves service names): bring it down first", c.Name())
	}
	return c.LoadConformanceImages(ctx)
}

// GatewayAPIDir returns the directory of the sigs.k8s.io/gateway-api module
// the repository's go.mod selects (from the module cache).
func GatewayAPIDir(ctx context.Context, repoDir string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", GatewayAPIModule)
	cmd.Dir = repoDir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
	out, err := cmd.Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("conformance: go list -m %s: %v (run `go mod download %s`)", GatewayAPIModule, err, GatewayAPIModule)
	}
	return dir, nil
}

// installCRDs applies the experimental-channel CRDs (and the safe-upgrades
// admission policy shipped with them) of the gateway-api module in go.mod.
func installCRDs(ctx context.Context, repoDir string, a *Applier) error {
	dir, err := GatewayAPIDir(ctx, repoDir)
	if err != nil {
		return err
	}
	objs, err := ReadManifests(filepath.Join(dir, experimentalCRDDir))
	if err != nil {
		return err
	}
	if len(objs) == 0 {
		return fmt.Errorf("conformance: no CRDs under %s", filepath.Join(dir, experimentalCRDDir))
	}
	return a.Apply(ctx, objs)
}

// waitNamespacesGone waits until none of namespaces is terminating (the
// suite deletes its namespaces at the end of a run; a new run must not
// start on a namespace being deleted).
func waitNamespacesGone(ctx context.Context, a *Applier, namespaces []string, timeout time.Duration) error {
	for _, ns := range namespaces {
		err := poll(ctx, timeout, func(ctx context.Context) (string, error) {
			n, err := a.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			switch {
			case isNotFound(err):
				return "", nil
			case err != nil:
				return err.Error(), nil
			case n.DeletionTimestamp != nil || n.Status.Phase == corev1.NamespaceTerminating:
				return "terminating", nil
			}
			return "", nil
		}, "namespace "+ns)
		if err != nil {
			return err
		}
	}
	return nil
}

func (a *Applier) waitProgrammed(ctx context.Context, ns, name string, timeout time.Duration) error {
	gvr := schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}
	return poll(ctx, timeout, func(ctx context.Context) (string, error) {
		u, err := a.dyn.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err.Error(), nil
		}
		if s := condition(u, "Programmed"); s != "True" {
			return fmt.Sprintf("Programmed=%q", s), nil
		}
		return "", nil
	}, "waypoint "+ns+"/"+name)
}

func namespaceObject(ns string, labels map[string]string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("v1")
	u.SetKind("Namespace")
	u.SetName(ns)
	u.SetLabels(labels)
	return u
}

// WaypointObject returns the waypoint Gateway for namespace ns: class
// warren-waypoint, one listener "mesh" on 15008 speaking HBONE, serving the
// namespace's Services.
func WaypointObject(ns string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1",
		"kind":       "Gateway",
		"metadata": map[string]any{
			"name":      WaypointName,
			"namespace": ns,
			"labels":    map[string]any{LabelWaypointFor: "service"},
		},
		"spec": map[string]any{
			"gatewayClassName": WaypointClass,
			"listeners": []any{map[string]any{
				"name":     WaypointListener,
				"port":     int64(WaypointPort),
				"protocol": WaypointProtocol,
			}},
		},
	}}
}
