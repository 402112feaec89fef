package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/warren-mesh/warren/istiod-lite/xds"
)

// versionInfo is what `version` reports.
type versionInfo struct {
	Client       componentVersion   `json:"client"`
	ControlPlane []componentVersion `json:"controlPlane,omitempty"`
	DataPlane    []componentVersion `json:"dataPlane,omitempty"`
	// Connected counts the proxies connected to istiod-lite, by kind.
	Connected map[string]int `json:"connectedProxies,omitempty"`
	Notes     []string       `json:"notes,omitempty"`
}

// componentVersion is one component at one version: the version is the
// image tag of its pods (the client's is stamped at build time).
type componentVersion struct {
	Component string `json:"component"`
	Version   string `json:"version"`
	Image     string `json:"image,omitempty"`
	Go        string `json:"go,omitempty"`
	Pods      int    `json:"pods,omitempty"`
	Ready     int    `json:"ready,omitempty"`
}

func newVersion(e *env) *cobra.Command {
	var client bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the client, control plane and data plane versions",
		Long: `version prints warrenctl's version and, from the cluster, the versions of
istiod-lite, the ztunnels and the waypoints (the image tags their pods run,
grouped, with ready/total pod counts), and how many proxies are connected to
istiod-lite. --client prints only warrenctl's.`,
		Example: `  warrenctl version
  warrenctl version --client
  warrenctl version -o json`,
		Args: noArgs,
	}
	out := addOutputFlag(cmd, formatTable)
	cmd.Flags().BoolVar(&client, "client", false, "only the client version (no cluster access)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		v := &versionInfo{Client: componentVersion{Component: "warrenctl", Version: version, Go: runtime.Version()}}
		var err error
		if !client {
			err = e.serverVersions(cmd.Context(), v)
		}
		if werr := writeVersion(cmd.OutOrStdout(), out.value, v); werr != nil {
			return werr
		}
		return err
	}
	return cmd
}

// serverVersions fills the control and data plane from the cluster and
// istiod-lite; it fails only when neither can be reached.
func (e *env) serverVersions(ctx context.Context, v *versionInfo) error {
	kc, kerr := e.kube("use --client, or --istiod-addr HOST:PORT")
	if kerr == nil {
		if err := podVersions(ctx, kc, e.flags, v); err != nil {
			return err
		}
	} else if e.flags.istiodAddr == "" {
		return kerr
	}
	ic, err := e.istiod()
	if err == nil {
		var st *xds.Status
		if st, err = istiodStatus(ctx, ic); err == nil {
			v.Connected = st.ByKind
			if v.Connected == nil {
				v.Connected = map[string]int{}
			}
		}
	}
	if err != nil {
		if kerr != nil {
			return err
		}
		v.Notes = append(v.Notes, "connected proxies unknown: "+oneLine(err.Error()))
	}
	return nil
}

// podVersions groups the pods of istiod-lite (selected by its Service),
// the ztunnels and the waypoints by image.
func podVersions(ctx context.Context, kc *kubeClients, f globalFlags, v *versionInfo) error {
	core := kc.core.CoreV1()
	svc, err := core.Services(f.systemNamespace).Get(ctx, f.istiodService, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		v.Notes = append(v.Notes, fmt.Sprintf("service %s/%s not found: is Warren installed?", f.systemNamespace, f.istiodService))
	case err != nil:
		return kc.apiError("get service "+f.systemNamespace+"/"+f.istiodService, err)
	case len(svc.Spec.Selector) == 0:
		v.Notes = append(v.Notes, fmt.Sprintf("service %s/%s has no selector: istiod-lite's pods are unknown", f.systemNamespace, f.istiodService))
	default:
		pods, err := core.Pods(f.systemNamespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(svc.Spec.Selector).String()})
		if err != nil {
			return kc.apiError("list istiod-lite pods", err)
		}
		v.ControlPlane = groupByImage("istiod-lite", "istiod-lite", pods.Items)
	}
	zt, err := core.Pods(f.systemNamespace).List(ctx, metav1.ListOptions{LabelSelector: f.ztunnelSelector})
	if err != nil {
		return kc.apiError("list ztunnel pods", err)
	}
	v.DataPlane = append(v.DataPlane, groupByImage("ztunnel", "ztunnel", zt.Items)...)
	wp, err := core.Pods("").List(ctx, metav1.ListOptions{LabelSelector: waypointDeploymentLabel + ",app.kubernetes.io/managed-by=istiod-lite"})
	if err != nil {
		return kc.apiError("list waypoint pods", err)
	}
	v.DataPlane = append(v.DataPlane, groupByImage("waypoint", "waypoint", wp.Items)...)
	return nil
}

// groupByImage counts pods per image of the container named container
// (else the first container).
func groupByImage(component, container string, pods []corev1.Pod) []componentVersion {
	byImage := map[string]*componentVersion{}
	for _, p := range pods {
		if len(p.Spec.Containers) == 0 {
			continue
		}
		img := p.Spec.Containers[0].Image
		for _, c := range p.Spec.Containers {
			if c.Name == container {
				img = c.Image
			}
		}
		cv := byImage[img]
		if cv == nil {
			cv = &componentVersion{Component: component, Version: imageTag(img), Image: img}
			byImage[img] = cv
		}
		cv.Pods++
		if podRunningReady(&p) {
			cv.Ready++
		}
	}
	var out []componentVersion
	for _, k := range sortedKeys(byImage) {
		out = append(out, *byImage[k])
	}
	return out
}

// imageTag is the tag of an image reference ("latest" when none, the
// digest when pinned by digest).
func imageTag(img string) string {
	if i := strings.Index(img, "@"); i >= 0 {
		return img[i+1:]
	}
	slash := strings.LastIndex(img, "/")
	if i := strings.LastIndex(img, ":"); i > slash {
		return img[i+1:]
	}
	return "latest"
}

func writeVersion(w io.Writer, format string, v *versionInfo) error {
	if format != formatTable {
		return writeStructured(w, format, v)
	}
	t := newTable("COMPONENT", "VERSION", "IMAGE", "PODS READY")
	t.add(v.Client.Component, v.Client.Version+" ("+v.Client.Go+")", "-", "-")
	for _, c := range append(slices.Clone(v.ControlPlane), v.DataPlane...) {
		t.add(c.Component, c.Version, c.Image, fmt.Sprintf("%d/%d", c.Ready, c.Pods))
	}
	if err := t.write(w); err != nil {
		return err
	}
	if v.Connected != nil {
		var parts []string
		for _, k := range sortedKeys(v.Connected) {
			parts = append(parts, fmt.Sprintf("%d %s", v.Connected[k], k))
		}
		fmt.Fprintf(w, "\nConnected to istiod-lite: %s\n", dash(strings.Join(parts, ", ")))
	}
	for _, n := range v.Notes {
		fmt.Fprintln(w, "Note: "+n)
	}
	return nil
}
