package main

// The analyzer codes. Codes are stable: a code is never reused for
// another meaning, and the severity of a code does not change. Checks
// marked live need the cluster (or istiod-lite) and are skipped offline.

// Severities.
const (
	sevError   = "Error"
	sevWarning = "Warning"
)

type analyzerCode struct {
	Code     string `json:"code"`
	Severity string `json:"severity"`
	Name     string `json:"name"`
	Summary  string `json:"summary"`
	// Needs says what the check needs beyond the objects ("" = nothing).
	Needs string `json:"needs,omitempty"`
}

const (
	codeWaypointMissing      = "WA001"
	codeWaypointUnusable     = "WA002"
	codeWaypointNotReady     = "WA003"
	codeRouteNoWaypoint      = "WA004"
	codeRouteNotAccepted     = "WA005"
	codeRoutePartial         = "WA006"
	codeRouteKindConflict    = "WA007"
	codeRouteShadowed        = "WA008"
	codeBackendUnresolved    = "WA009"
	codeBackendNotPermitted  = "WA010"
	codeGRPCAppProtocol      = "WA011"
	codeNoZtunnel            = "WA012"
	codeZtunnelDisconnected  = "WA013"
	codeProxyNACK            = "WA014"
	codePolicyTargetNotFound = "WA015"
	codePolicyInvalid        = "WA016"
	codePolicyNotEnforced    = "WA017"
	codePolicyL7NoWaypoint   = "WA018"
	codeStrictPlaintext      = "WA019"
	codeStrictNotInMesh      = "WA020"
	codeRootExpired          = "WA021"
	codeRootExpiring         = "WA022"
	codePolicyL7AtZtunnel    = "WA023"
)

var analyzerCodes = []analyzerCode{
	{codeWaypointMissing, sevError, "UseWaypointNotFound", "a warren.io/use-waypoint label names a waypoint Gateway that does not exist", ""},
	{codeWaypointUnusable, sevError, "UseWaypointUnusable", "a warren.io/use-waypoint label names a Gateway that cannot serve that traffic (not of class warren-waypoint, or its waypoint-for excludes it)", ""},
	{codeWaypointNotReady, sevWarning, "WaypointNotReady", "a waypoint that Services or pods use is not Programmed (no available Deployment)", "the cluster, or waypoint Deployments in the directory"},
	{codeRouteNoWaypoint, sevWarning, "RouteWithoutWaypoint", "a route binds a Service that no waypoint serves: the route has no effect", ""},
	{codeRouteNotAccepted, sevError, "RouteNotAccepted", "a route is not accepted for a parent (missing Service or port, no valid rule, listener refusal)", ""},
	{codeRoutePartial, sevWarning, "RoutePartiallyInvalid", "some rules of a route are dropped or answer 500 (bad regex, bad duration, unsupported filter)", ""},
	{codeRouteKindConflict, sevError, "RouteKindConflict", "an HTTPRoute and a GRPCRoute bind the same Service port: the newer kind is ignored there", ""},
	{codeRouteShadowed, sevWarning, "RouteShadowed", "a route entry can never match: an earlier entry of the same table matches every request it would (conflicting routes)", ""},
	{codeBackendUnresolved, sevError, "BackendNotResolved", "a backendRef names a missing object or an unsupported kind: its share of requests gets 500", ""},
	{codeBackendNotPermitted, sevError, "BackendNotPermitted", "a cross-namespace backendRef of a Gateway route has no ReferenceGrant: its share of requests gets 500", ""},
	{codeGRPCAppProtocol, sevWarning, "GRPCWithoutAppProtocol", "a Service port carrying gRPC (GRPCRoute parent or backend) declares no HTTP/2 appProtocol", ""},
	{codeNoZtunnel, sevError, "NoZtunnelOnNode", "pods in the mesh run on a node with no running ztunnel", "the cluster, or ztunnel pods in the directory"},
	{codeZtunnelDisconnected, sevWarning, "ZtunnelNotConnected", "a running ztunnel has no xDS stream to istiod-lite: it runs on stale configuration", "istiod-lite"},
	{codeProxyNACK, sevError, "ConfigRejected", "a proxy rejected (NACKed) its configuration and runs on its last good version", "istiod-lite"},
	{codePolicyTargetNotFound, sevError, "PolicyTargetNotFound", "an AuthorizationPolicy targets an object that does not exist", ""},
	{codePolicyInvalid, sevError, "PolicyInvalid", "an AuthorizationPolicy is invalid and not enforced", ""},
	{codePolicyNotEnforced, sevWarning, "PolicyNotEnforced", "no proxy enforces an AuthorizationPolicy: no workload of its target is in the mesh and no waypoint serves it", ""},
	{codePolicyL7NoWaypoint, sevWarning, "PolicyL7WithoutWaypoint", "an AuthorizationPolicy has method/path/header conditions but only ztunnel enforces it: those rules fail closed", ""},
	{codeStrictPlaintext, sevWarning, "StrictMTLSPlaintextClients", "workloads in strict mTLS mode have clients outside the mesh, whose plaintext they refuse", ""},
	{codeStrictNotInMesh, sevWarning, "StrictMTLSOutsideMesh", "strict mTLS mode on a pod that is not in the mesh has no effect", ""},
	{codeRootExpired, sevError, "RootExpired", "a root of the trust bundle has expired", "the cluster's root ConfigMap, istiod-lite, or --trust-bundle"},
	{codeRootExpiring, sevWarning, "RootExpiring", "a root of the trust bundle expires within --root-expiry-warning", "the cluster's root ConfigMap, istiod-lite, or --trust-bundle"},
	{codePolicyL7AtZtunnel, sevError, "PolicyL7AtZtunnel", "an AuthorizationPolicy with method/path/header conditions targets a namespace (ztunnel) as well as a waypoint: ztunnel refuses connections the waypoint would allow", ""},
}

// severityOf returns a code's severity.
func severityOf(code string) string {
	for _, c := range analyzerCodes {
		if c.Code == code {
			return c.Severity
		}
	}
	return sevError
}

// finding is one problem analyze reports.
type finding struct {
	Code      string `json:"code"`
	Severity  string `json:"severity"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Message   string `json:"message"`
	Fix       string `json:"fix"`
}
