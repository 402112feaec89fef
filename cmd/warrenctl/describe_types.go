package main

// What `x describe` reports; the JSON/YAML output is these types.

type podDescription struct {
	Kind           string   `json:"kind"`
	Namespace      string   `json:"namespace"`
	Name           string   `json:"name"`
	Node           string   `json:"node,omitempty"`
	Zone           string   `json:"zone,omitempty"`
	IPs            []string `json:"ips,omitempty"`
	Phase          string   `json:"phase,omitempty"`
	Ready          bool     `json:"ready"`
	ServiceAccount string   `json:"serviceAccount"`
	Identity       string   `json:"identity"`
	Enrolled       bool     `json:"enrolled"`
	EnrolledWhy    string   `json:"enrolledWhy"`
	MTLSMode       string   `json:"mtlsMode"`
	MTLSWhy        string   `json:"mtlsWhy"`
	// Waypoint for traffic addressed to the pod's IP.
	Waypoint waypointView `json:"waypoint"`
	// Services the pod backs.
	Services []podServiceView `json:"services,omitempty"`
	// InboundRoutes bind the Services the pod backs.
	InboundRoutes []routeView `json:"inboundRoutes,omitempty"`
	// OutboundRoutes are the consumer routes of the pod's namespace: they
	// decide where the pod's own requests to those Services go.
	OutboundRoutes []routeView `json:"outboundRoutes,omitempty"`
	// Policies ztunnel enforces on traffic to the pod.
	Policies    []policyView `json:"policies,omitempty"`
	Diagnostics []string     `json:"diagnostics,omitempty"`
}

type podServiceView struct {
	Service  string   `json:"service"`
	Ports    []string `json:"ports"`
	Waypoint string   `json:"waypoint,omitempty"`
}

type waypointView struct {
	Gateway string `json:"gateway,omitempty"`
	// Why names the label that decided.
	Why     string `json:"why"`
	Problem string `json:"problem,omitempty"`
	Address string `json:"address,omitempty"`
	// Ready is the waypoint Gateway's Programmed condition.
	Ready string `json:"ready,omitempty"`
}

type serviceDescription struct {
	Kind      string            `json:"kind"`
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Hostname  string            `json:"hostname"`
	Type      string            `json:"type"`
	Addresses []string          `json:"addresses,omitempty"`
	Ports     []servicePortView `json:"ports"`
	Waypoint  waypointView      `json:"waypoint"`
	Routes    []routeView       `json:"routes,omitempty"`
	Policies  []policyView      `json:"policies,omitempty"`
	// TrafficPolicy names the XBackendTrafficPolicy in force.
	TrafficPolicy string         `json:"trafficPolicy,omitempty"`
	Endpoints     []endpointView `json:"endpoints,omitempty"`
	Diagnostics   []string       `json:"diagnostics,omitempty"`
}

type servicePortView struct {
	Name        string `json:"name,omitempty"`
	Port        int32  `json:"port"`
	TargetPort  string `json:"targetPort"`
	Protocol    string `json:"protocol"`
	AppProtocol string `json:"appProtocol,omitempty"`
	// L7 is how the waypoint treats the port (HTTP, GRPC, TCP, detect).
	L7 string `json:"l7,omitempty"`
}

type endpointView struct {
	Pod      string `json:"pod"`
	Address  string `json:"address"`
	Node     string `json:"node,omitempty"`
	Ready    bool   `json:"ready"`
	Mesh     bool   `json:"mesh"`
	Identity string `json:"identity"`
	Ports    string `json:"ports"`
}

type routeView struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Parent is the Service and port the route binds.
	Parent string `json:"parent"`
	// Role is producer, or consumer for clients in the route's namespace.
	Role       string           `json:"role"`
	Conditions []conditionView  `json:"conditions,omitempty"`
	Entries    []routeEntryView `json:"entries,omitempty"`
}

type routeEntryView struct {
	Table    string   `json:"table"`
	Port     uint32   `json:"port"`
	Index    int      `json:"index"`
	Rule     string   `json:"rule"`
	Match    string   `json:"match"`
	Backends []string `json:"backends,omitempty"`
	Filters  []string `json:"filters,omitempty"`
}

type conditionView struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

type policyView struct {
	Name       string          `json:"name"`
	Action     string          `json:"action"`
	Rules      int             `json:"rules"`
	L7         bool            `json:"l7"`
	Target     string          `json:"target"`
	Conditions []conditionView `json:"conditions,omitempty"`
}
