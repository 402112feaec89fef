package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/warren-mesh/warren/istiod-lite/xds"
)

func newProxyStatus(e *env) *cobra.Command {
	var kind string
	cmd := &cobra.Command{
		Use:     "proxy-status [PROXY]",
		Aliases: []string{"ps"},
		Short:   "Every ztunnel and waypoint connected to istiod-lite: config versions per type, ACK/NACK, last push",
		Long: `proxy-status reads istiod-lite's /debug/syncz and shows, for every connected
proxy (ztunnel~<node>, waypoint~<ns>/<gateway>~<pod>), the sync state of each
resource type with the version the proxy ACKed:

  SYNCED   the proxy ACKed exactly what it should hold
  STALE    a push is out and not answered yet
  NACKED   the proxy rejected the current version and runs on its last good one
  PENDING  a change waits for the debounce window

NACK reasons are listed under the table. With PROXY (a node ID, a connection
"<id>#<n>", or any ~-separated part of the ID such as a node or pod name) the
per-type details are shown.`,
		Example: `  warrenctl proxy-status
  warrenctl proxy-status --kind waypoint
  warrenctl proxy-status node-a                 # details of ztunnel~node-a
  warrenctl proxy-status -o json
  warrenctl proxy-status --istiod-addr 127.0.0.1:15014`,
		Args:              maxArgs(1, "[PROXY]"),
		ValidArgsFunction: completeProxies(e),
	}
	out := addOutputFlag(cmd, formatTable)
	cmd.Flags().StringVar(&kind, "kind", "", "only proxies of this kind: ztunnel or waypoint")
	_ = cmd.RegisterFlagCompletionFunc("kind", cobra.FixedCompletions([]string{"ztunnel", "waypoint"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if kind != "" && kind != string(xds.KindZtunnel) && kind != string(xds.KindWaypoint) {
			return usagef("--kind %q: want ztunnel or waypoint", kind)
		}
		ic, err := e.istiod()
		if err != nil {
			return err
		}
		all, err := syncz(cmd.Context(), ic)
		if err != nil {
			return err
		}
		sortProxyStatus(all)
		ps := all
		if kind != "" {
			ps = slices.DeleteFunc(slices.Clone(ps), func(p xds.ProxyStatus) bool { return p.Kind != kind })
		}
		if len(args) == 1 {
			if ps = matchProxies(ps, args[0]); len(ps) == 0 {
				return fmt.Errorf("no connected proxy matches %q (connected: %s)", args[0], proxyIDList(all))
			}
		}
		w := cmd.OutOrStdout()
		if out.value != formatTable {
			if ps == nil {
				ps = []xds.ProxyStatus{}
			}
			return writeStructured(w, out.value, ps)
		}
		if len(ps) == 0 {
			_, err := fmt.Fprintf(w, "No proxies are connected to %s.\n", ic.where())
			return err
		}
		if len(args) == 1 {
			return writeProxyDetails(w, ps, e.now())
		}
		return writeProxyTable(w, ps, e.now())
	}
	return cmd
}

// typeOrder is the column order of the resource types.
var typeOrder = []string{xds.TypeWorkload, xds.TypeService, xds.TypeAuthorization, xds.TypeTrustBundle, xds.TypeL7Service}

// shortTypeName is the last part of a type URL ("Workload").
func shortTypeName(t string) string {
	if i := strings.LastIndexByte(t, '.'); i >= 0 {
		return t[i+1:]
	}
	return t
}

func sortProxyStatus(ps []xds.ProxyStatus) {
	slices.SortFunc(ps, func(a, b xds.ProxyStatus) int {
		if c := strings.Compare(a.Proxy, b.Proxy); c != 0 {
			return c
		}
		return strings.Compare(a.Conn, b.Conn)
	})
}

// matchProxies keeps the streams whose node ID or connection is s, or
// whose ID has s as one of its ~ or / separated parts.
func matchProxies(ps []xds.ProxyStatus, s string) []xds.ProxyStatus {
	var out []xds.ProxyStatus
	for _, p := range ps {
		if p.Proxy == s || p.Conn == s {
			out = append(out, p)
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, p := range ps {
		parts := strings.FieldsFunc(p.Proxy, func(r rune) bool { return r == '~' || r == '/' })
		if slices.Contains(parts, s) || strings.HasSuffix(p.Proxy, "~"+s) || strings.Contains(p.Proxy, "~"+s+"~") {
			out = append(out, p)
		}
	}
	return out
}

func proxyIDList(ps []xds.ProxyStatus) string {
	if len(ps) == 0 {
		return "none"
	}
	ids := make([]string, 0, len(ps))
	for _, p := range ps {
		ids = append(ids, p.Proxy)
	}
	return strings.Join(slices.Compact(ids), ", ")
}

// columnTypes returns typeOrder plus any other type the proxies hold.
func columnTypes(ps []xds.ProxyStatus) []string {
	cols := slices.Clone(typeOrder)
	var extra []string
	for _, p := range ps {
		for t := range p.Types {
			if !slices.Contains(cols, t) && !slices.Contains(extra, t) {
				extra = append(extra, t)
			}
		}
	}
	slices.Sort(extra)
	return append(cols, extra...)
}

func shortVersion(v string) string {
	if len(v) > 8 {
		return v[:8]
	}
	return v
}

// lastPush is the latest push of any type.
func lastPush(p xds.ProxyStatus) time.Time {
	var t time.Time
	for _, ts := range p.Types {
		if ts.LastSent.After(t) {
			t = ts.LastSent
		}
	}
	return t
}

func writeProxyTable(w io.Writer, ps []xds.ProxyStatus, now time.Time) error {
	cols := columnTypes(ps)
	header := []string{"PROXY"}
	for _, t := range cols {
		header = append(header, strings.ToUpper(shortTypeName(t)))
	}
	header = append(header, "CONNECTED", "LAST PUSH")
	tb := newTable(header...)
	dup := map[string]int{}
	for _, p := range ps {
		dup[p.Proxy]++
	}
	nacks := newTable("PROXY", "TYPE", "NONCE", "AGE", "ERROR")
	for _, p := range ps {
		name := p.Proxy
		if dup[p.Proxy] > 1 {
			name = p.Conn
		}
		row := []string{name}
		for _, t := range cols {
			ts, ok := p.Types[t]
			if !ok {
				row = append(row, "-")
				continue
			}
			row = append(row, fmt.Sprintf("%s (%s)", ts.Status, shortVersion(ts.Version)))
			if n := ts.LastNACK; n != nil && ts.Status == xds.StatusNACKed {
				nacks.add(name, shortTypeName(t), n.Nonce, age(now, n.Time), oneLine(n.Error))
			}
		}
		row = append(row, age(now, p.ConnectedSince), age(now, lastPush(p)))
		tb.add(row...)
	}
	if err := tb.write(w); err != nil {
		return err
	}
	if nacks.len() == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nRejected configuration (the proxy runs on its last good version):")
	return nacks.write(w)
}

func writeProxyDetails(w io.Writer, ps []xds.ProxyStatus, now time.Time) error {
	for i, p := range ps {
		if i > 0 {
			fmt.Fprintln(w)
		}
		k := newKV(w)
		k.add("Proxy", "%s", p.Proxy)
		k.add("Connection", "%s", p.Conn)
		k.add("Kind", "%s", p.Kind)
		k.add("Caller", "%s", dash(p.Caller))
		k.add("Peer", "%s", dash(p.Peer))
		k.add("Connected", "%s ago (%s)", age(now, p.ConnectedSince), p.ConnectedSince.UTC().Format(time.RFC3339))
		if err := k.flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
		tb := newTable("TYPE", "STATUS", "RESOURCES", "VERSION", "DESIRED", "PUSHES", "ACKS", "NACKS", "PENDING", "LAST PUSH", "LAST ACK", "SUBSCRIPTION")
		var nackLines []string
		for _, t := range columnTypes([]xds.ProxyStatus{p}) {
			ts, ok := p.Types[t]
			if !ok {
				continue
			}
			sub := "*"
			if !ts.Wildcard {
				sub = fmt.Sprintf("%d name(s)", len(ts.Names))
			}
			tb.add(shortTypeName(t), ts.Status, fmt.Sprint(ts.Resources), ts.Version, ts.DesiredVersion,
				fmt.Sprint(ts.Pushes), fmt.Sprint(ts.ACKs), fmt.Sprint(ts.NACKs), fmt.Sprint(ts.PendingResponses),
				age(now, ts.LastSent), age(now, ts.LastACK), sub)
			if n := ts.LastNACK; n != nil {
				line := fmt.Sprintf("%s: nonce %s, %s ago, %s: %s", shortTypeName(t), n.Nonce, age(now, n.Time), dash(n.Code), oneLine(n.Error))
				if len(n.Resources) > 0 {
					line += " [" + strings.Join(n.Resources, ", ") + "]"
				}
				if ts.Status != xds.StatusNACKed {
					line += " (since superseded)"
				}
				nackLines = append(nackLines, line)
			}
		}
		if err := tb.write(w); err != nil {
			return err
		}
		if len(nackLines) > 0 {
			fmt.Fprintln(w, "\nLast NACK per type:")
			for _, l := range nackLines {
				fmt.Fprintln(w, "  "+l)
			}
		}
	}
	return nil
}
