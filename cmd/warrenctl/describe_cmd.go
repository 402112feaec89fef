package main

import (
	"strings"

	"github.com/spf13/cobra"
)

func newDescribe(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "describe",
		Short: "Describe a pod or Service: identity, enrolment, waypoint and why, routes, policies, endpoints",
		Example: `  warrenctl x describe pod curl-0 -n client
  warrenctl x describe service echo -n server
  warrenctl x describe svc server/echo -o yaml
  warrenctl x describe service echo -n server -f examples/   # offline`,
	}
	group(cmd)
	cmd.AddCommand(newDescribeKind(e, "pod", []string{"pods", "po"}), newDescribeKind(e, "service", []string{"services", "svc"}))
	return cmd
}

func newDescribeKind(e *env, kind string, aliases []string) *cobra.Command {
	var dir string
	what := map[string]string{
		"pod": `identity, whether it is in the mesh and which label decided, its mTLS mode, the
waypoint for traffic to its IP, the Services it backs, the routes that apply to
traffic to it and to its own requests (consumer routes of its namespace) with
their status and table entries, the policies ztunnel enforces on it.`,
		"service": `hostname and addresses, ports with their protocol at the waypoint, the waypoint
and which label decided (and whether it is ready), every route bound to it with
its status and its entries in the waypoint's tables (in precedence order),
policies, and the endpoints with their identity.`,
	}[kind]
	cmd := &cobra.Command{
		Use:     kind + " NAME",
		Aliases: aliases,
		Short:   "Describe a " + kind + " as the mesh sees it",
		Long:    "describe " + kind + " shows " + what + "\n\nNAME may be NAMESPACE/NAME. Offline with -f DIR.",
		Example: map[string]string{
			"pod":     "  warrenctl x describe pod curl-0 -n client\n  warrenctl x describe pod client/curl-0 -o json\n  warrenctl x describe pod curl-0 -n client -f examples/",
			"service": "  warrenctl x describe service echo -n server\n  warrenctl x describe svc server/echo -o yaml\n  warrenctl x describe service echo -n server -f examples/",
		}[kind],
		Args:              exactArgs(1, "NAME"),
		ValidArgsFunction: completeObjects(e, kind),
	}
	out := addOutputFlag(cmd, formatTable)
	cmd.Flags().StringVarP(&dir, "filename", "f", "", "offline: a directory of YAML (or one file) instead of the cluster")
	_ = cmd.MarkFlagDirname("filename")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ns, name := e.namespaceOf(), args[0]
		if a, b, ok := strings.Cut(args[0], "/"); ok {
			ns, name = a, b
		}
		if name == "" || ns == "" {
			return usagef("%s %q: want NAME or NAMESPACE/NAME", kind, args[0])
		}
		m, err := e.loadMesh(cmd.Context(), dir)
		if err != nil {
			return err
		}
		var v any
		if kind == "pod" {
			v, err = describePod(m, ns, name)
		} else {
			v, err = describeService(m, ns, name)
		}
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		if out.value != formatTable {
			return writeStructured(w, out.value, v)
		}
		if d, ok := v.(*podDescription); ok {
			return writePodDescription(w, d)
		}
		return writeServiceDescription(w, v.(*serviceDescription))
	}
	return cmd
}
