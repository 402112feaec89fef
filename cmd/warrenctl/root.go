package main

import (
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "warrenctl",
		Short: "Inspect and debug the Warren mesh: why did a request go where it went?",
		Long: `warrenctl inspects and debugs the Warren mesh. It reads istiod-lite's debug
endpoints (port 15014, through the API server or --istiod-addr), the API server,
and — offline, with -f — a directory of YAML run through the same pure translation
istiod-lite uses.`,
		Example: `  warrenctl proxy-status
  warrenctl analyze -A
  warrenctl x describe service echo -n server
  warrenctl x trace --from pod/client/curl-0 http://echo.server/api
  warrenctl analyze -f examples/        # offline, no cluster`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	group(root)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{msg: err.Error()} })
	f := root.PersistentFlags()
	f.StringVar(&e.flags.kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&e.flags.context, "context", "", "kubeconfig context to use")
	f.StringVarP(&e.flags.namespace, "namespace", "n", "", "namespace (default: the context's namespace)")
	f.StringVar(&e.flags.istiodAddr, "istiod-addr", "", "reach istiod-lite's monitoring port directly at HOST:PORT instead of through the API server")
	f.StringVar(&e.flags.systemNamespace, "istiod-namespace", defaultSystemNamespace, "namespace Warren's control plane and ztunnels run in")
	f.StringVar(&e.flags.istiodService, "istiod-service", defaultIstiodService, "istiod-lite's Service name")
	f.StringVar(&e.flags.ztunnelSelector, "ztunnel-selector", defaultZtunnelSelector, "label selector of the ztunnel pods in --istiod-namespace")
	f.DurationVar(&e.flags.timeout, "request-timeout", 15*time.Second, "give up on any one request after this long")
	_ = root.RegisterFlagCompletionFunc("namespace", completeNamespaces(e))
	_ = root.RegisterFlagCompletionFunc("context", completeContexts(e))

	root.AddCommand(newVersion(e), newProxyStatus(e), newZtunnelConfig(e), newWaypoint(e), newAnalyze(e))
	x := &cobra.Command{
		Use:   "x",
		Short: "Experimental commands: describe, trace, translate, ca",
		Example: `  warrenctl x describe pod curl-0 -n client
  warrenctl x trace --from pod/client/curl-0 http://echo.server/
  warrenctl x translate -f examples/`,
	}
	group(x)
	caCmd := group(&cobra.Command{Use: "ca", Short: "Talk to the certificate service", Example: "  warrenctl x ca issue --help"})
	caCmd.AddCommand(newIssue())
	x.AddCommand(caCmd, newTranslate(e), newDescribe(e), newTrace(e))
	root.AddCommand(x)
	return root
}

// noArgs refuses arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args[0])
}

// group makes cmd a command that only holds subcommands: without
// arguments it prints its help; an unknown subcommand is a usage error
// (cobra would otherwise print help and succeed).
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usagef("unknown command %q for %q (see '%s --help')", args[0], c.CommandPath(), c.CommandPath())
		}
		return c.Help()
	}
	return cmd
}

// exactArgs wants n arguments, named in the message.
func exactArgs(n int, names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s wants %d argument(s): %s (got %d)", cmd.CommandPath(), n, joinNames(names), len(args))
		}
		return nil
	}
}

// maxArgs accepts up to n arguments.
func maxArgs(n int, names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usagef("%s takes at most %d argument(s): %s (got %d)", cmd.CommandPath(), n, joinNames(names), len(args))
		}
		return nil
	}
}

func joinNames(names []string) string { return strings.Join(names, " ") }

// namespaceOf returns -n, else the kubeconfig context's namespace when a
// kubeconfig is usable, else "default".
func (e *env) namespaceOf() string {
	if e.flags.namespace != "" {
		return e.flags.namespace
	}
	if kc, err := e.kube(""); err == nil && kc.namespace != "" {
		return kc.namespace
	}
	return "default"
}

// flagSet reports whether a flag was given on the command line.
func flagSet(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && f.Changed
}
