package main

// The prediction a trace produces: hops for people, and the expected
// outcome (status or backends with their shares down to endpoints) for
// programs — the e2e test of `x trace --send` compares the shares with
// the backends that actually answered.

// tracePrediction explains one request hop by hop.
type tracePrediction struct {
	Request     traceRequestView `json:"request"`
	Source      traceSource      `json:"source"`
	Destination traceDestination `json:"destination"`
	Hops        []traceHop       `json:"hops"`
	Result      traceResult      `json:"result"`
	// ConfigFrom says which configuration the prediction used.
	ConfigFrom string   `json:"configFrom"`
	Notes      []string `json:"notes,omitempty"`
}

type traceRequestView struct {
	Method string `json:"method"`
	URL    string `json:"url"`
	Host   string `json:"host"`
	Port   uint32 `json:"port"`
	// Path is the normalized path the proxies match on.
	Path string `json:"path"`
	GRPC bool   `json:"grpc,omitempty"`
}

type traceSource struct {
	Pod      string `json:"pod"`
	Address  string `json:"address"`
	Node     string `json:"node,omitempty"`
	Identity string `json:"identity"`
	Enrolled bool   `json:"enrolled"`
	Why      string `json:"why,omitempty"`
}

type traceDestination struct {
	// Kind is service, workload or external.
	Kind     string `json:"kind"`
	Name     string `json:"name,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	Address  string `json:"address,omitempty"`
	Port     uint32 `json:"port"`
	// Protocol the waypoint treats the port as (HTTP, HTTP2, GRPC, TCP,
	// or "detect" when undeclared).
	Protocol    string `json:"protocol,omitempty"`
	Waypoint    string `json:"waypoint,omitempty"`
	WaypointWhy string `json:"waypointWhy,omitempty"`
}

// traceHop is one decision point.
type traceHop struct {
	Step     string            `json:"step"`
	At       string            `json:"at"`
	Decision string            `json:"decision"`
	Details  []string          `json:"details,omitempty"`
	Routes   []traceRouteCheck `json:"routes,omitempty"`
}

// traceRouteCheck is one route table entry tried, in table order.
type traceRouteCheck struct {
	Index   int    `json:"index"`
	Route   string `json:"route"`
	Match   string `json:"match"`
	Matched bool   `json:"matched"`
	Why     string `json:"why,omitempty"`
}

// Outcomes.
const (
	outcomeForwarded   = "forwarded"
	outcomeDenied      = "denied"
	outcomeNoRoute     = "no-route"
	outcomeRedirect    = "redirect"
	outcomeError       = "error"
	outcomeRefused     = "refused"
	outcomePassthrough = "passthrough"
	outcomePartial     = "partial"
)

type traceResult struct {
	Outcome string `json:"outcome"`
	// Status is the HTTP status the mesh answers itself (403, 404, 500,
	// 503, a redirect); 0 when the request reaches a backend.
	Status     int    `json:"status,omitempty"`
	GRPCStatus string `json:"grpcStatus,omitempty"`
	Summary    string `json:"summary"`
	Route      string `json:"route,omitempty"`
	Location   string `json:"location,omitempty"`
	// Backends with the share of requests each gets (percent of all).
	Backends []traceBackend `json:"backends,omitempty"`
}

type traceBackend struct {
	Service string  `json:"service"`
	Port    uint32  `json:"port"`
	Weight  uint32  `json:"weight"`
	Percent float64 `json:"percent"`
	// Invalid is why the backend answers 500.
	Invalid   string          `json:"invalid,omitempty"`
	Endpoints []traceEndpoint `json:"endpoints,omitempty"`
}

type traceEndpoint struct {
	Workload string `json:"workload"`
	Address  string `json:"address"`
	Node     string `json:"node,omitempty"`
	Identity string `json:"identity,omitempty"`
	// Tunnel is HBONE (in the mesh) or TCP.
	Tunnel string `json:"tunnel"`
	// Percent of all requests expected here.
	Percent float64 `json:"percent"`
	// Allowed by the destination ztunnel's L4 policies, and why.
	Allowed bool   `json:"allowed"`
	Policy  string `json:"policy,omitempty"`
}
