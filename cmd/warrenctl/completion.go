package main

import (
	"context"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/warren-mesh/warren/istiod-lite/model"
)

// Dynamic shell completion. Failures complete nothing: a completion must
// never print errors into the user's shell.

type completer = func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective)

func completionCtx(cmd *cobra.Command, e *env) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, e.flags.timeout)
}

func filterPrefix(names []string, prefix string) []string {
	out := names[:0]
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func completeNamespaces(e *env) completer {
	return func(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
		kc, err := e.kube("")
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := completionCtx(cmd, e)
		defer cancel()
		l, err := kc.core.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []string
		for _, n := range l.Items {
			names = append(names, n.Name)
		}
		return filterPrefix(names, prefix), cobra.ShellCompDirectiveNoFileComp
	}
}

func completeContexts(e *env) completer {
	return func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		if e.flags.kubeconfig != "" {
			rules.ExplicitPath = e.flags.kubeconfig
		}
		cfg, err := rules.Load()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return sortedKeys(cfg.Contexts), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeObjects completes names of pods, services or waypoints in the
// command's namespace.
func completeObjects(e *env, kind string) completer {
	return func(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
		kc, err := e.kube("")
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := completionCtx(cmd, e)
		defer cancel()
		ns := e.namespaceOf()
		var names []string
		switch kind {
		case "pod":
			if l, err := kc.core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
				for _, o := range l.Items {
					names = append(names, o.Name)
				}
			}
		case "service":
			if l, err := kc.core.CoreV1().Services(ns).List(ctx, metav1.ListOptions{}); err == nil {
				for _, o := range l.Items {
					names = append(names, o.Name)
				}
			}
		case "waypoint":
			if l, err := kc.gw.GatewayV1().Gateways(ns).List(ctx, metav1.ListOptions{}); err == nil {
				for _, o := range l.Items {
					if string(o.Spec.GatewayClassName) == model.WaypointClass {
						names = append(names, o.Name)
					}
				}
			}
		}
		return filterPrefix(names, prefix), cobra.ShellCompDirectiveNoFileComp
	}
}

func completeProxies(e *env) completer {
	return func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ic, err := e.istiod()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := completionCtx(cmd, e)
		defer cancel()
		ps, err := syncz(ctx, ic)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var ids []string
		for _, p := range ps {
			ids = append(ids, p.Proxy)
		}
		return slices.Compact(filterPrefix(ids, prefix)), cobra.ShellCompDirectiveNoFileComp
	}
}
