package model

// Labels and annotations Warren reads (Istio-compatible in shape).
const (
	// LabelDataplaneMode on a Namespace enrols it ("ambient"); on a Pod,
	// "none" opts the pod out and "ambient" opts it in.
	LabelDataplaneMode = "warren.io/dataplane-mode"
	DataplaneAmbient   = "ambient"
	DataplaneNone      = "none"

	// LabelUseWaypoint on a Namespace, Service or Pod names the waypoint
	// Gateway to use; "none" opts out. LabelUseWaypointNamespace names the
	// Gateway's namespace when it is not the object's own.
	LabelUseWaypoint          = "warren.io/use-waypoint"
	LabelUseWaypointNamespace = "warren.io/use-waypoint-namespace"
	WaypointNone              = "none"

	// LabelWaypointFor on a waypoint Gateway says what traffic it serves:
	// service (default), workload, all or none.
	LabelWaypointFor    = "warren.io/waypoint-for"
	WaypointForService  = "service"
	WaypointForWorkload = "workload"
	WaypointForAll      = "all"
	WaypointForNone     = "none"

	// LabelMTLSMode on a Namespace or Pod: strict or permissive (default).
	LabelMTLSMode  = "warren.io/mtls-mode"
	MTLSStrict     = "strict"
	MTLSPermissive = "permissive"

	// GatewayClass names and controllers.
	WaypointClass        = "warren-waypoint"
	WaypointController   = "warren.io/waypoint-controller"
	GatewayClassName     = "warren"
	GatewayController    = "warren.io/gateway-controller"
	MeshController       = "warren.io/mesh-controller"
	WaypointListenerName = "mesh"
	HBONEPort            = 15008
)
