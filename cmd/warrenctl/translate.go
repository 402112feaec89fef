package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/controller"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/translate"
	"github.com/warren-mesh/warren/istiod-lite/xds"
	"github.com/warren-mesh/warren/istiod-lite/xds/client"
)

// translateSections are the top-level keys of translate.Output.YAML.
var translateSections = []string{"workloads", "services", "authorizations", "l7services", "trustBundle", "status", "waypoints", "diagnostics"}

func newTranslate(e *env) *cobra.Command {
	var dir, trustDomain, section, proxy string
	cmd := &cobra.Command{
		Use:   "translate -f DIR",
		Short: "Translate a directory of YAML into the exact per-proxy config istiod-lite would send, offline",
		Long: `translate runs the same pure translation as istiod-lite on a directory (or one
file) of Kubernetes and Gateway API YAML — Pods included, with their IPs and nodes —
and prints the resulting proxy configuration and the status every object would get.
No cluster is needed.

--proxy keeps only what one proxy receives, by the xDS server's own scope rule:
a ztunnel gets every Workload, Service, Authorization and the TrustBundle; a
waypoint additionally gets the L7Services it serves. Proxies are named by node ID
(ztunnel~node-a, waypoint~server/waypoint~pod) or shortly (ztunnel/node-a,
waypoint/server/waypoint). -o table prints one line per resource.`,
		Example: `  # everything
  warrenctl x translate -f examples/
  # only the waypoint route tables, as JSON
  warrenctl x translate -f my-mesh/ --section l7services -o json
  # exactly what the waypoint server/waypoint receives
  warrenctl x translate -f examples/ --proxy waypoint/server/waypoint
  # the status your routes would get
  warrenctl x translate -f routes.yaml --section status`,
		Args: noArgs,
	}
	out := addOutputFlag(cmd, formatYAML)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if dir == "" {
			return usagef("-f is required: a directory or a YAML file")
		}
		if section != "" && !slices.Contains(translateSections, section) {
			return usagef("--section %q: want one of %s", section, strings.Join(translateSections, ", "))
		}
		snap, err := load(dir)
		if err != nil {
			return err
		}
		snap.Config.TrustDomain = trustDomain
		res := translate.Translate(model.NewIndex(snap))
		var node *client.NodeID
		if proxy != "" {
			n, err := parseProxyArg(proxy)
			if err != nil {
				return usagef("--proxy: %v", err)
			}
			node = &n
		}
		if out.value == formatTable {
			return translateTable(res, node).write(cmd.OutOrStdout())
		}
		doc, err := translateDoc(res, node)
		if err != nil {
			return err
		}
		var v any = doc
		if section != "" {
			sec, ok := doc[section]
			if !ok {
				return fmt.Errorf("--section %s: empty in this output (empty sections are omitted)", section)
			}
			v = sec
		}
		return writeStructured(cmd.OutOrStdout(), out.value, v)
	}
	cmd.Flags().StringVarP(&dir, "filename", "f", "", "directory of YAML files, or one YAML file")
	cmd.Flags().StringVar(&section, "section", "", "print only this top-level section: "+strings.Join(translateSections, ", "))
	cmd.Flags().StringVar(&trustDomain, "trust-domain", "cluster.local", "trust domain of workload identities")
	cmd.Flags().StringVar(&proxy, "proxy", "", "print only what this proxy receives (ztunnel~NODE, waypoint~NS/GATEWAY~POD, ztunnel/NODE, waypoint/NS/GATEWAY)")
	_ = cmd.RegisterFlagCompletionFunc("section", cobra.FixedCompletions(translateSections, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.MarkFlagDirname("filename")
	return cmd
}

// parseProxyArg accepts a node ID or the short forms kind/node and
// waypoint/namespace/gateway.
func parseProxyArg(s string) (client.NodeID, error) {
	if strings.Contains(s, "~") {
		return xds.ParseNodeID(s)
	}
	parts := strings.Split(s, "/")
	switch {
	case len(parts) == 2 && parts[0] == string(client.KindZtunnel) && parts[1] != "":
		return client.ZtunnelNodeID(parts[1]), nil
	case len(parts) == 3 && parts[0] == string(client.KindWaypoint) && parts[1] != "" && parts[2] != "":
		return client.NodeID{Kind: client.KindWaypoint, Namespace: parts[1], Gateway: parts[2]}, nil
	}
	return client.NodeID{}, fmt.Errorf("%q: want ztunnel~NODE, waypoint~NS/GATEWAY~POD, ztunnel/NODE or waypoint/NS/GATEWAY", s)
}

// inScope reports whether node receives resource name of typeURL, by the
// xDS server's default scope.
func inScope(node *client.NodeID, typeURL, name string, m proto.Message) bool {
	return node == nil || xds.DefaultScope(&xds.Proxy{Node: *node}, typeURL, name, m)
}

// translateDoc renders the output as translate.Output.YAML does, keeping
// only what node receives when node is set (then status, waypoints and
// diagnostics, which no proxy receives, are left out).
func translateDoc(res *translate.Output, node *client.NodeID) (map[string]any, error) {
	b, err := res.YAML()
	if err != nil {
		return nil, err
	}
	doc := map[string]any{}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if node == nil {
		return doc, nil
	}
	sections := map[string]string{"workloads": xds.TypeWorkload, "services": xds.TypeService,
		"authorizations": xds.TypeAuthorization, "l7services": xds.TypeL7Service, "trustBundle": xds.TypeTrustBundle}
	byType := controller.Resources(res)
	for key := range doc {
		typeURL, ok := sections[key]
		if !ok {
			delete(doc, key)
			continue
		}
		m, _ := doc[key].(map[string]any)
		for name := range m {
			if !inScope(node, typeURL, name, byType[typeURL][name]) {
				delete(m, name)
			}
		}
		if len(m) == 0 {
			delete(doc, key)
		}
	}
	return doc, nil
}

// translateTable is -o table: one line per resource, then diagnostics.
func translateTable(res *translate.Output, node *client.NodeID) *table {
	t := newTable("TYPE", "NAME", "SUMMARY")
	for _, k := range sortedKeys(res.Workloads) {
		w := res.Workloads[k]
		if !inScope(node, xds.TypeWorkload, k, w) {
			continue
		}
		tunnel := "TCP"
		if w.GetTunnel() == warrenv1.TunnelProtocol_TUNNEL_HBONE {
			tunnel = "HBONE"
		}
		ready := "ready"
		if !w.GetReady() {
			ready = "not ready"
		}
		s := fmt.Sprintf("%s on %s, %s, %s, %s", strings.Join(w.GetAddresses(), ","), dash(w.GetNode()), tunnel, ready, w.GetIdentity())
		if wp := w.GetWaypoint(); wp != nil {
			s += ", waypoint " + wp.GetGateway()
		}
		t.add("Workload", k, s)
	}
	for _, k := range sortedKeys(res.Services) {
		s := res.Services[k]
		if !inScope(node, xds.TypeService, k, s) {
			continue
		}
		var ports []string
		for _, p := range s.GetPorts() {
			ports = append(ports, fmt.Sprint(p.GetPort()))
		}
		sum := fmt.Sprintf("%s ports %s", dash(strings.Join(s.GetAddresses(), ",")), strings.Join(ports, ","))
		if wp := s.GetWaypoint(); wp != nil {
			sum += ", waypoint " + wp.GetGateway()
		}
		t.add("Service", k, sum)
	}
	for _, k := range sortedKeys(res.Authorizations) {
		a := res.Authorizations[k]
		if !inScope(node, xds.TypeAuthorization, k, a) {
			continue
		}
		sum := fmt.Sprintf("%s, %d rule(s)", a.GetAction(), len(a.GetRules()))
		if a.GetL7() {
			sum += ", L7"
		}
		t.add("Authorization", k, sum)
	}
	for _, k := range sortedKeys(res.L7Services) {
		l := res.L7Services[k]
		if !inScope(node, xds.TypeL7Service, k, l) {
			continue
		}
		routes := 0
		for _, p := range l.GetPorts() {
			routes += len(p.GetProducer().GetRoutes())
			for _, c := range p.GetConsumers() {
				routes += len(c.GetRoutes())
			}
		}
		t.add("L7Service", k, fmt.Sprintf("waypoint %s, %d port(s), %d route entries", l.GetWaypoint(), len(l.GetPorts()), routes))
	}
	if tb := res.TrustBundle; tb != nil && inScope(node, xds.TypeTrustBundle, xds.TrustBundleName, tb) {
		t.add("TrustBundle", xds.TrustBundleName, fmt.Sprintf("%s, %d root(s)", tb.GetTrustDomain(), len(tb.GetRootsPem())))
	}
	if node == nil {
		for _, d := range res.Diagnostics {
			t.add("Diagnostic", model.Key(d.Namespace, d.Name), d.Kind+": "+d.Message)
		}
	}
	return t
}
