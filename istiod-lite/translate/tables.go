package translate

import (
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/model"
)

// l7Services builds the route tables of every Service a waypoint serves.
// Producer routes (same namespace as the Service) form the producer table;
// consumer routes form one table per client namespace, which replaces the
// producer table for clients of that namespace (GEP-1294). A port with
// both HTTPRoutes and GRPCRoutes in one group keeps the kind of the oldest
// route; the others are reported Conflicted.
func (t *translator) l7Services() {
	bySvc := map[*corev1.Service][]*parentInfo{}
	for _, r := range t.routeList {
		for _, p := range r.parents {
			if p.svc != nil && accepted(p.status) {
				bySvc[p.svc] = append(bySvc[p.svc], p)
			}
		}
	}
	owner := map[*parentInfo]*routeInfo{}
	for _, r := range t.routeList {
		for _, p := range r.parents {
			owner[p] = r
		}
	}
	for _, svc := range t.ix.Services {
		b := t.ix.WaypointForService(svc)
		if b.Gateway == nil {
			continue
		}
		ls := &warrenv1.L7Service{
			Name:                  svc.Name,
			Namespace:             svc.Namespace,
			Hostname:              t.ix.Hostname(svc),
			Waypoint:              model.Key(b.Gateway.Namespace, b.Gateway.Name),
			AuthorizationPolicies: t.policiesForService(svc, b.Gateway),
		}
		for _, ip := range model.ServiceIPs(svc) {
			ls.Addresses = append(ls.Addresses, ip.String())
		}
		for _, sp := range svc.Spec.Ports {
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
				continue
			}
			port := &warrenv1.L7Port{Port: uint32(sp.Port), Protocol: protocolOf(appProtocol(sp))}
			groups := map[string][]*parentInfo{} // consumer ns ("" = producer) → parents
			for _, p := range bySvc[svc] {
				if p.port == 0 || p.port == sp.Port {
					groups[p.consumerNS] = append(groups[p.consumerNS], p)
				}
			}
			for ns, ps := range groups {
				table := t.routeTable(sp.Port, ps, owner)
				if table == nil {
					continue
				}
				if ns == "" {
					port.Producer = table
				} else {
					if port.Consumers == nil {
						port.Consumers = map[string]*warrenv1.RouteTable{}
					}
					port.Consumers[ns] = table
				}
				if port.Protocol == warrenv1.Protocol_PROTOCOL_UNSPECIFIED {
					port.Protocol = warrenv1.Protocol_HTTP
					if table.Kind == kindGRPCRoute {
						port.Protocol = warrenv1.Protocol_GRPC
					}
				}
			}
			ls.Ports = append(ls.Ports, port)
		}
		t.out.L7Services[t.serviceKey(svc)] = ls
	}
	t.finishRouteStatus()
}

// protocolOf maps an appProtocol onto the waypoint's protocols.
func protocolOf(app string) warrenv1.Protocol {
	switch strings.ToLower(app) {
	case "http", "kubernetes.io/http", "http1":
		return warrenv1.Protocol_HTTP
	case "http2", "kubernetes.io/h2c", "h2c":
		return warrenv1.Protocol_HTTP2
	case "grpc", "grpc-web":
		return warrenv1.Protocol_GRPC
	case "tcp", "tls", "https", "kubernetes.io/ws", "kubernetes.io/wss":
		return warrenv1.Protocol_TCP
	}
	return warrenv1.Protocol_PROTOCOL_UNSPECIFIED
}

// routeTable merges the routes of one group on one port, in precedence
// order. The oldest route decides the kind; routes of the other kind are
// marked conflicted on this port.
func (t *translator) routeTable(port int32, ps []*parentInfo, owner map[*parentInfo]*routeInfo) *warrenv1.RouteTable {
	var oldest *routeInfo
	for _, p := range ps {
		if r := owner[p]; oldest == nil || older(r, oldest) {
			oldest = r
		}
	}
	if oldest == nil {
		return nil
	}
	table := &warrenv1.RouteTable{Kind: oldest.kind}
	var entries []entry
	seen := map[*routeInfo]bool{}
	for _, p := range ps {
		r := owner[p]
		if r.kind != oldest.kind {
			p.conflicted = append(p.conflicted, port)
			continue
		}
		p.attachedPorts++
		if seen[r] { // a route may name the same Service twice
			continue
		}
		seen[r] = true
		for _, ri := range r.rules {
			if ri.dropped != "" {
				continue
			}
			c := ri.compiled(meshMode)
			for mi, m := range ri.matches {
				route := &warrenv1.Route{
					Source:             &warrenv1.RouteRef{Kind: r.kind, Namespace: r.ns, Name: r.name, RuleIndex: uint32(ri.index), RuleName: ri.name, MatchIndex: uint32(mi)},
					Match:              m,
					Filters:            c.filters,
					Backends:           c.backends,
					Timeouts:           ri.timeouts,
					Retry:              ri.retry,
					SessionPersistence: ri.session,
				}
				if ri.fail500 != "" {
					route.Backends = []*warrenv1.Backend{{Invalid: ri.fail500, Weight: 1}}
				}
				entries = append(entries, entry{route: route, r: r, rule: ri.index, match: mi})
			}
		}
	}
	if table.Kind == kindGRPCRoute {
		sort.SliceStable(entries, func(i, j int) bool { return grpcBefore(entries[i], entries[j]) })
	} else {
		sort.SliceStable(entries, func(i, j int) bool { return httpBefore(entries[i], entries[j]) })
	}
	for _, e := range entries {
		table.Routes = append(table.Routes, e.route)
	}
	return table
}

type entry struct {
	route       *warrenv1.Route
	r           *routeInfo
	rule, match int
}

// httpBefore orders HTTP route entries by the Gateway API precedence:
// Exact path, then (regular expression, then) the longest Prefix, a method
// match, the most header matches, the most query matches; then the oldest
// route, its namespace/name, and rule and match order.
func httpBefore(a, b entry) bool {
	pa, pb := a.route.Match.GetPath(), b.route.Match.GetPath()
	if ra, rb := pathRank(pa), pathRank(pb); ra != rb {
		return ra > rb
	}
	if la, lb := pathLen(pa), pathLen(pb); la != lb {
		return la > lb
	}
	if ma, mb := a.route.Match.GetMethod() != "", b.route.Match.GetMethod() != ""; ma != mb {
		return ma
	}
	if ha, hb := len(a.route.Match.GetHeaders()), len(b.route.Match.GetHeaders()); ha != hb {
		return ha > hb
	}
	if qa, qb := len(a.route.Match.GetQueryParams()), len(b.route.Match.GetQueryParams()); qa != qb {
		return qa > qb
	}
	return tieBreak(a, b)
}

// pathLen is the length that ranks a path match: a trailing slash of a
// prefix does not count ("/v1/" and "/v1" match the same paths).
func pathLen(p *warrenv1.PathMatch) int {
	v := p.GetValue()
	if p.GetType() == warrenv1.MatchType_PREFIX && len(v) > 1 {
		v = strings.TrimSuffix(v, "/")
	}
	return len(v)
}

func pathRank(p *warrenv1.PathMatch) int {
	switch p.GetType() {
	case warrenv1.MatchType_EXACT:
		return 3
	case warrenv1.MatchType_REGEX:
		return 2
	}
	return 1
}

// grpcBefore orders gRPC entries: the most characters in a matching
// service, then in a matching method, then the most header matches.
func grpcBefore(a, b entry) bool {
	ga, gb := a.route.Match.GetGrpc(), b.route.Match.GetGrpc()
	if sa, sb := len(ga.GetService()), len(gb.GetService()); sa != sb {
		return sa > sb
	}
	if ma, mb := len(ga.GetMethod()), len(gb.GetMethod()); ma != mb {
		return ma > mb
	}
	if ha, hb := len(a.route.Match.GetHeaders()), len(b.route.Match.GetHeaders()); ha != hb {
		return ha > hb
	}
	return tieBreak(a, b)
}

func tieBreak(a, b entry) bool {
	if a.r != b.r {
		return older(a.r, b.r)
	}
	if a.rule != b.rule {
		return a.rule < b.rule
	}
	return a.match < b.match
}
