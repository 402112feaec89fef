package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/xds"
)

func newWaypoint(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "waypoint",
		Short: "Generate, apply, list, inspect and delete waypoints",
		Long: `A waypoint is a Gateway of class warren-waypoint with one HBONE listener on
15008; istiod-lite deploys it (ServiceAccount, Service, Deployment named after
the Gateway). Services use it when they, or their namespace, carry
warren.io/use-waypoint=<name>; its warren.io/waypoint-for label (service,
workload, all, none) says which traffic it serves.`,
		Example: `  warrenctl waypoint generate -n shop
  warrenctl waypoint apply -n shop --enroll-namespace --wait
  warrenctl waypoint list -A
  warrenctl waypoint status -n shop
  warrenctl waypoint delete waypoint -n shop`,
	}
	group(cmd)
	cmd.AddCommand(newWaypointGenerate(e), newWaypointApply(e), newWaypointList(e), newWaypointStatus(e), newWaypointDelete(e))
	return cmd
}

func addForFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "for", model.WaypointForService, "traffic the waypoint serves: "+strings.Join(waypointForValues, ", "))
	_ = cmd.RegisterFlagCompletionFunc("for", cobra.FixedCompletions(waypointForValues, cobra.ShellCompDirectiveNoFileComp))
}

func waypointName(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	return "waypoint"
}

func newWaypointGenerate(e *env) *cobra.Command {
	var forValue string
	cmd := &cobra.Command{
		Use:   "generate [NAME]",
		Short: "Print the Gateway that makes a waypoint (default name: waypoint)",
		Example: `  warrenctl waypoint generate -n shop
  warrenctl waypoint generate shop-wp -n shop --for all -o json
  warrenctl waypoint generate -n shop | kubectl apply -f -`,
		Args: maxArgs(1, "[NAME]"),
	}
	out := addOutputFlag(cmd, formatYAML, formatYAML, formatJSON)
	addForFlag(cmd, &forValue)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := waypointName(args)
		if err := checkWaypointArgs(name, forValue); err != nil {
			return err
		}
		return writeStructured(cmd.OutOrStdout(), out.value, gatewayManifest(waypointGateway(e.namespaceOf(), name, forValue)))
	}
	return cmd
}

func newWaypointApply(e *env) *cobra.Command {
	var (
		forValue              string
		enroll, overwrite, wt bool
		timeout               time.Duration
	)
	cmd := &cobra.Command{
		Use:   "apply [NAME]",
		Short: "Create a waypoint in the cluster, optionally making its namespace use it",
		Long: `apply creates the waypoint Gateway (default name: waypoint). --enroll-namespace
labels the namespace warren.io/use-waypoint=NAME so its Services use it. An
existing waypoint with other settings is changed only with --overwrite; a
Gateway of another class is never touched. --wait waits until istiod-lite
marks it Programmed (its Deployment is available).`,
		Example: `  warrenctl waypoint apply -n shop --enroll-namespace
  warrenctl waypoint apply shop-wp -n shop --for all --wait --timeout 2m
  warrenctl waypoint apply -n shop --for workload --overwrite`,
		Args: maxArgs(1, "[NAME]"),
	}
	addForFlag(cmd, &forValue)
	fl := cmd.Flags()
	fl.BoolVar(&enroll, "enroll-namespace", false, "label the namespace warren.io/use-waypoint=NAME")
	fl.BoolVar(&overwrite, "overwrite", false, "change an existing waypoint's settings")
	fl.BoolVar(&wt, "wait", false, "wait until the waypoint is Programmed")
	fl.DurationVar(&timeout, "timeout", time.Minute, "how long --wait waits")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := waypointName(args)
		if err := checkWaypointArgs(name, forValue); err != nil {
			return err
		}
		kc, err := e.kube("warrenctl waypoint generate prints the manifest instead")
		if err != nil {
			return err
		}
		ns := e.namespaceOf()
		if err := applyWaypoint(cmd.Context(), kc, cmd.OutOrStdout(), e.stderr, waypointGateway(ns, name, forValue), overwrite, enroll); err != nil {
			return err
		}
		if !wt {
			return nil
		}
		if err := waitProgrammed(cmd.Context(), kc, ns, name, timeout); err != nil {
			return err
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "waypoint %s is ready\n", waypointKey(ns, name))
		return err
	}
	return cmd
}

func newWaypointList(e *env) *cobra.Command {
	var (
		all bool
		dir string
	)
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List waypoints: what they serve, readiness, address, users",
		Example: `  warrenctl waypoint list -n shop
  warrenctl waypoint list -A -o yaml
  warrenctl waypoint list -A -f examples/   # offline`,
		Args: noArgs,
	}
	out := addOutputFlag(cmd, formatTable)
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "every namespace")
	cmd.Flags().StringVarP(&dir, "filename", "f", "", "offline: a directory of YAML (or one file) instead of the cluster")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		m, err := e.loadMesh(cmd.Context(), dir)
		if err != nil {
			return err
		}
		ns := ""
		if !all {
			ns = e.namespaceOf()
		}
		ws := waypointInfos(m, ns, "", nil)
		w := cmd.OutOrStdout()
		if out.value != formatTable {
			if ws == nil {
				ws = []waypointInfo{}
			}
			return writeStructured(w, out.value, ws)
		}
		if len(ws) == 0 {
			where := "namespace " + ns
			if ns == "" {
				where = "any namespace"
			}
			_, err := fmt.Fprintf(w, "No waypoints in %s.\n", where)
			return err
		}
		t := newTable("NAMESPACE", "NAME", "FOR", "PROGRAMMED", "ADDRESS", "SERVICES", "PODS", "ROUTES")
		for _, wi := range ws {
			svcs, pods := 0, 0
			for _, u := range wi.UsedBy {
				if u.Kind == "Service" {
					svcs++
				} else {
					pods++
				}
			}
			t.add(wi.Namespace, wi.Name, wi.For, conditionShort(wi.Programmed), dash(wi.Address), fmt.Sprint(svcs), fmt.Sprint(pods), fmt.Sprint(wi.Routes))
		}
		return t.write(w)
	}
	return cmd
}

func newWaypointStatus(e *env) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show a waypoint's readiness, identity, address and which Services and pods use it (and why)",
		Example: `  warrenctl waypoint status -n shop
  warrenctl waypoint status shop-wp -n shop -o json
  warrenctl waypoint status -n server -f examples/   # offline`,
		Args:              maxArgs(1, "[NAME]"),
		ValidArgsFunction: completeObjects(e, "waypoint"),
	}
	out := addOutputFlag(cmd, formatTable)
	cmd.Flags().StringVarP(&dir, "filename", "f", "", "offline: a directory of YAML (or one file) instead of the cluster")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		m, err := e.loadMesh(cmd.Context(), dir)
		if err != nil {
			return err
		}
		ns, name := e.namespaceOf(), ""
		if len(args) == 1 {
			name = args[0]
		}
		var ps []xds.ProxyStatus
		if dir == "" {
			if ic, err := e.istiod(); err == nil {
				ps, _ = syncz(cmd.Context(), ic)
			}
		}
		ws := waypointInfos(m, ns, name, ps)
		if len(ws) == 0 {
			if name != "" {
				return fmt.Errorf("waypoint %s not found (no Gateway of class %s)", waypointKey(ns, name), model.WaypointClass)
			}
			return fmt.Errorf("no waypoints in namespace %s", ns)
		}
		w := cmd.OutOrStdout()
		if out.value != formatTable {
			return writeStructured(w, out.value, ws)
		}
		for i, wi := range ws {
			if i > 0 {
				fmt.Fprintln(w)
			}
			if err := writeWaypointStatus(w, wi, m.live); err != nil {
				return err
			}
		}
		return nil
	}
	return cmd
}

func writeWaypointStatus(w io.Writer, wi waypointInfo, live bool) error {
	k := newKV(w)
	k.add("Waypoint", "%s (serves %s traffic)", waypointKey(wi.Namespace, wi.Name), wi.For)
	k.add("Identity", "%s", wi.Identity)
	k.add("Address", "%s", dash(wi.Address))
	p := wi.Programmed
	prog := p.Status
	if p.Reason != "" {
		prog += " (" + p.Reason + ": " + p.Message + ")"
	}
	k.add("Programmed", "%s", prog)
	if wi.Deployment != "" {
		k.add("Deployment", "%s ready", wi.Deployment)
	}
	if live {
		k.add("Connected", "%s", dash(strings.Join(wi.Proxies, ", ")))
	}
	k.add("Route entries", "%d", wi.Routes)
	if err := k.flush(); err != nil {
		return err
	}
	err := section(w, "Used by", func(w io.Writer) error {
		if len(wi.UsedBy) == 0 {
			return nil
		}
		t := newTable("KIND", "NAME", "WHY")
		for _, u := range wi.UsedBy {
			t.add(u.Kind, u.Name, u.Why)
		}
		return t.write(w)
	})
	if err != nil || len(wi.Unserved) == 0 {
		return err
	}
	return section(w, "Labels naming it that it cannot serve", func(w io.Writer) error {
		t := newTable("KIND", "NAME", "WHY")
		for _, u := range wi.Unserved {
			t.add(u.Kind, u.Name, u.Why)
		}
		return t.write(w)
	})
}

func newWaypointDelete(e *env) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "delete NAME... | --all",
		Short: "Delete waypoints (istiod-lite removes their Deployment, Service and ServiceAccount)",
		Example: `  warrenctl waypoint delete waypoint -n shop
  warrenctl waypoint delete --all -n shop`,
		ValidArgsFunction: completeObjects(e, "waypoint"),
		Args:              cobra.ArbitraryArgs,
	}
	cmd.Flags().BoolVar(&all, "all", false, "delete every waypoint of the namespace")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if all == (len(args) > 0) {
			return usagef("give waypoint names or --all (not both)")
		}
		kc, err := e.kube("")
		if err != nil {
			return err
		}
		ns := e.namespaceOf()
		names := args
		if all {
			l, err := kc.gw.GatewayV1().Gateways(ns).List(cmd.Context(), metav1.ListOptions{})
			if err != nil {
				return kc.apiError("list Gateways in "+ns, err)
			}
			for _, g := range l.Items {
				if string(g.Spec.GatewayClassName) == model.WaypointClass {
					names = append(names, g.Name)
				}
			}
			if len(names) == 0 {
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "No waypoints in namespace %s.\n", ns)
				return err
			}
		}
		for _, n := range names {
			if err := deleteWaypoint(cmd.Context(), kc, cmd.OutOrStdout(), e.stderr, ns, n); err != nil {
				return err
			}
		}
		return nil
	}
	return cmd
}
