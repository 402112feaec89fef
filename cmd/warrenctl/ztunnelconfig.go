package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/duration"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

var ztunnelSections = []string{"workloads", "services", "policies", "certificates", "connections", "all"}

func newZtunnelConfig(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ztunnel-config",
		Short: "Show what one ztunnel holds: workloads, services, policies, certificates, connections",
		Long: `ztunnel-config reads a ztunnel's admin endpoint (localhost:15000 in its pod),
reached through the API server with a port-forward to the ztunnel pod on --node
(or the only ztunnel), or directly with --ztunnel-addr. It shows the
configuration the ztunnel holds (from istiod-lite over xDS), the certificates it
holds for its pods' identities (state, serial, chain, not-after), and its live
connections. -n filters workloads, services and policies by namespace.`,
		Example: `  warrenctl ztunnel-config workloads --node node-a
  warrenctl ztunnel-config certificates --node node-a
  warrenctl ztunnel-config services -n shop --node node-a -o yaml
  warrenctl ztunnel-config all --ztunnel-addr 127.0.0.1:15000`,
	}
	group(cmd)
	for _, s := range ztunnelSections {
		cmd.AddCommand(newZtunnelSection(e, s))
	}
	return cmd
}

func newZtunnelSection(e *env, section string) *cobra.Command {
	var node, addr string
	short := map[string]string{
		"workloads":    "Workloads the ztunnel knows: address, node, HBONE or TCP, waypoint, readiness, identity",
		"services":     "Services the ztunnel knows: addresses, ports, waypoint, endpoints",
		"policies":     "Authorization policies the ztunnel holds",
		"certificates": "Certificates the ztunnel holds for its pods: identity, state, serial, chain, not-after",
		"connections":  "Connections the ztunnel proxies now",
		"all":          "Everything above",
	}[section]
	cmd := &cobra.Command{
		Use:     section,
		Short:   short,
		Example: fmt.Sprintf("  warrenctl ztunnel-config %s --node node-a\n  warrenctl ztunnel-config %s --ztunnel-addr 127.0.0.1:15000 -o json", section, section),
		Args:    noArgs,
	}
	out := addOutputFlag(cmd, formatTable)
	cmd.Flags().StringVar(&node, "node", "", "the node whose ztunnel to ask (needed when several run)")
	cmd.Flags().StringVar(&addr, "ztunnel-addr", "", "reach the admin endpoint directly at HOST:PORT")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		za, err := e.ztunnelAdminFor(ctx, addr, node)
		if err != nil {
			return err
		}
		defer za.close()
		ns := ""
		if flagSet(cmd.Flags(), "namespace") {
			ns = e.flags.namespace
		}
		v, err := fetchZtunnel(ctx, za, section)
		if err != nil {
			return err
		}
		v.filter(ns)
		w := cmd.OutOrStdout()
		if out.value != formatTable {
			return writeStructured(w, out.value, v.structured(section))
		}
		return v.write(w, section, e.now())
	}
	return cmd
}

// ztunnelView is what one ztunnel reported, decoded.
type ztunnelView struct {
	dump      *ztunnelConfigDump
	conns     *ztunnelConnections
	workloads map[string]*warrenv1.Workload
	services  map[string]*warrenv1.Service
	policies  map[string]*warrenv1.Authorization
}

func fetchZtunnel(ctx context.Context, za *ztunnelAdmin, section string) (*ztunnelView, error) {
	v := &ztunnelView{}
	if section != "connections" {
		b, err := za.get(ctx, "/config_dump")
		if err != nil {
			return nil, err
		}
		v.dump = &ztunnelConfigDump{}
		if err := json.Unmarshal(b, v.dump); err != nil {
			return nil, fmt.Errorf("%s: /config_dump: %v", za.where, err)
		}
		if v.workloads, err = unmarshalAll(v.dump.Workloads, func() *warrenv1.Workload { return &warrenv1.Workload{} }); err != nil {
			return nil, fmt.Errorf("%s: /config_dump workloads: %v", za.where, err)
		}
		if v.services, err = unmarshalAll(v.dump.Services, func() *warrenv1.Service { return &warrenv1.Service{} }); err != nil {
			return nil, fmt.Errorf("%s: /config_dump services: %v", za.where, err)
		}
		if v.policies, err = unmarshalAll(v.dump.Policies, func() *warrenv1.Authorization { return &warrenv1.Authorization{} }); err != nil {
			return nil, fmt.Errorf("%s: /config_dump policies: %v", za.where, err)
		}
	}
	if section == "connections" || section == "all" {
		b, err := za.get(ctx, "/debug/connections")
		if err != nil {
			return nil, err
		}
		v.conns = &ztunnelConnections{}
		if err := json.Unmarshal(b, v.conns); err != nil {
			return nil, fmt.Errorf("%s: /debug/connections: %v", za.where, err)
		}
	}
	return v, nil
}

// filter keeps the resources of namespace ns ("" keeps all).
func (v *ztunnelView) filter(ns string) {
	if ns == "" {
		return
	}
	for k, w := range v.workloads {
		if w.GetNamespace() != ns {
			delete(v.workloads, k)
		}
	}
	for k, s := range v.services {
		if s.GetNamespace() != ns {
			delete(v.services, k)
		}
	}
	for k, p := range v.policies {
		if p.GetNamespace() != ns {
			delete(v.policies, k)
		}
	}
}

// structured is the JSON/YAML form: the resources as protojson objects.
func (v *ztunnelView) structured(section string) any {
	conv := func(m map[string]json.RawMessage, keep func(string) bool) map[string]any {
		out := map[string]any{}
		for k, raw := range m {
			if !keep(k) {
				continue
			}
			var x any
			_ = json.Unmarshal(raw, &x)
			out[k] = x
		}
		return out
	}
	doc := map[string]any{}
	if v.dump != nil {
		doc["node"] = v.dump.Node
		doc["workloads"] = conv(v.dump.Workloads, func(k string) bool { return v.workloads[k] != nil })
		doc["services"] = conv(v.dump.Services, func(k string) bool { return v.services[k] != nil })
		doc["policies"] = conv(v.dump.Policies, func(k string) bool { return v.policies[k] != nil })
		certs := v.dump.Certificates
		if certs == nil {
			certs = []ztunnelCertificate{}
		}
		doc["certificates"] = certs
	}
	if v.conns != nil {
		cs := v.conns.Connections
		if cs == nil {
			cs = []ztunnelConnection{}
		}
		doc["connections"] = cs
	}
	if section == "all" {
		return doc
	}
	return doc[section]
}

func (v *ztunnelView) write(w io.Writer, section string, now time.Time) error {
	parts := []string{section}
	if section == "all" {
		parts = []string{"workloads", "services", "policies", "certificates", "connections"}
		fmt.Fprintf(w, "ztunnel on node %s\n", dash(v.dump.Node))
	}
	for _, p := range parts {
		if section == "all" {
			fmt.Fprintf(w, "\n%s:\n", strings.ToUpper(p[:1])+p[1:])
		}
		var t *table
		switch p {
		case "workloads":
			t = v.workloadTable()
		case "services":
			t = v.serviceTable()
		case "policies":
			t = v.policyTable()
		case "certificates":
			if err := writeCertificates(w, v.dump.Certificates, now); err != nil {
				return err
			}
			continue
		case "connections":
			t = connectionTable(v.conns.Connections, now)
		}
		if t.len() == 0 {
			fmt.Fprintf(w, "No %s.\n", p)
			continue
		}
		if err := t.write(w); err != nil {
			return err
		}
	}
	return nil
}

func (v *ztunnelView) workloadTable() *table {
	t := newTable("NAMESPACE", "NAME", "ADDRESS", "NODE", "PROTOCOL", "WAYPOINT", "READY", "IDENTITY")
	for _, k := range sortedKeys(v.workloads) {
		wl := v.workloads[k]
		proto := "TCP"
		if wl.GetTunnel() == warrenv1.TunnelProtocol_TUNNEL_HBONE {
			proto = "HBONE"
		}
		t.add(wl.GetNamespace(), wl.GetName(), dash(strings.Join(wl.GetAddresses(), ",")), dash(wl.GetNode()), proto,
			dash(wl.GetWaypoint().GetGateway()), yesNo(wl.GetReady()), wl.GetIdentity())
	}
	return t
}

func (v *ztunnelView) serviceTable() *table {
	endpoints := map[string]int{}
	for _, wl := range v.workloads {
		for k := range wl.GetServices() {
			if wl.GetReady() {
				endpoints[k]++
			}
		}
	}
	t := newTable("NAMESPACE", "NAME", "ADDRESSES", "PORTS", "WAYPOINT", "ENDPOINTS")
	keys := sortedKeys(v.services)
	slices.SortStableFunc(keys, func(a, b string) int {
		return strings.Compare(v.services[a].GetNamespace()+"/"+v.services[a].GetName(), v.services[b].GetNamespace()+"/"+v.services[b].GetName())
	})
	for _, k := range keys {
		s := v.services[k]
		var ports []string
		for _, p := range s.GetPorts() {
			target := fmt.Sprint(p.GetTargetPort())
			if p.GetTargetPortName() != "" {
				target = p.GetTargetPortName()
			}
			ports = append(ports, fmt.Sprintf("%d→%s", p.GetPort(), target))
		}
		t.add(s.GetNamespace(), s.GetName(), dash(strings.Join(s.GetAddresses(), ",")), dash(strings.Join(ports, ",")),
			dash(s.GetWaypoint().GetGateway()), fmt.Sprint(endpoints[k]))
	}
	return t
}

func (v *ztunnelView) policyTable() *table {
	t := newTable("NAMESPACE", "NAME", "ACTION", "RULES", "L7")
	for _, k := range sortedKeys(v.policies) {
		p := v.policies[k]
		t.add(p.GetNamespace(), p.GetName(), p.GetAction().String(), fmt.Sprint(len(p.GetRules())), yesNo(p.GetL7()))
	}
	return t
}

func writeCertificates(w io.Writer, cs []ztunnelCertificate, now time.Time) error {
	if len(cs) == 0 {
		_, err := fmt.Fprintln(w, "No certificates.")
		return err
	}
	t := newTable("IDENTITY", "STATE", "SERIAL", "NOT AFTER", "EXPIRES IN", "ROTATIONS", "CHAIN", "PODS", "LAST ERROR")
	for _, c := range cs {
		left := "-"
		if !c.NotAfter.IsZero() {
			if d := c.NotAfter.Sub(now); d > 0 {
				left = duration.HumanDuration(d)
			} else {
				left = "EXPIRED " + duration.HumanDuration(-d) + " ago"
			}
		}
		notAfter := "-"
		if !c.NotAfter.IsZero() {
			notAfter = c.NotAfter.UTC().Format(time.RFC3339)
		}
		t.add(c.Identity, c.State, dash(c.Serial), notAfter, left, fmt.Sprint(c.Rotations), chainString(c.Chain), fmt.Sprint(len(c.Pods)), dash(c.LastError))
	}
	return t.write(w)
}

// chainString renders "leaf ← intermediate(s)" by serial and issuer.
func chainString(ch []ztunnelChainCert) string {
	if len(ch) == 0 {
		return "-"
	}
	var parts []string
	for i, c := range ch {
		if i == 0 {
			parts = append(parts, "leaf")
			continue
		}
		parts = append(parts, c.Subject)
	}
	return fmt.Sprintf("%s (issuer %s)", strings.Join(parts, " ← "), ch[len(ch)-1].Issuer)
}

func connectionTable(cs []ztunnelConnection, now time.Time) *table {
	t := newTable("DIRECTION", "PROTOCOL", "SOURCE", "DESTINATION", "VIA", "SOURCE IDENTITY", "AGE", "SENT", "RECEIVED")
	for _, c := range cs {
		src := c.Source
		if c.SourceWorkload != "" {
			src = c.SourceWorkload + " (" + c.Source + ")"
		}
		dst := c.Destination
		switch {
		case c.DestinationService != "":
			dst = c.DestinationService + " → " + dash(c.DestinationWorkload) + " (" + c.Destination + ")"
		case c.DestinationWorkload != "":
			dst = c.DestinationWorkload + " (" + c.Destination + ")"
		}
		t.add(c.Direction, c.Protocol, src, dst, dash(c.Waypoint), dash(c.SourceIdentity), age(now, c.Started), fmt.Sprint(c.BytesSent), fmt.Sprint(c.BytesReceived))
	}
	return t
}
