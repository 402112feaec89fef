package translate

import (
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/model"
)

// Output is everything one translation produces.
type Output struct {
	// Resources for ztunnel, by resource name.
	Workloads      map[string]*warrenv1.Workload
	Services       map[string]*warrenv1.Service
	Authorizations map[string]*warrenv1.Authorization
	TrustBundle    *warrenv1.TrustBundle
	// Resources for waypoints, by resource name ("<ns>/<hostname>").
	L7Services map[string]*warrenv1.L7Service
	// Status the objects should carry.
	Status Status
	// Waypoints are the waypoint Gateways the deployer must run.
	Waypoints []Waypoint
	// Diagnostics are problems on objects that have no status of their own
	// (labels on Pods, Services, Namespaces naming unusable waypoints).
	Diagnostics []Diagnostic
}

// Status holds desired status by object key ("<ns>/<name>"; GatewayClass:
// "<name>"). Conditions carry no LastTransitionTime: the status writer
// keeps the old time when a condition did not change.
type Status struct {
	GatewayClasses         map[string][]metav1.Condition
	Gateways               map[string]gwv1.GatewayStatus
	HTTPRoutes             map[string][]gwv1.RouteParentStatus
	GRPCRoutes             map[string][]gwv1.RouteParentStatus
	BackendTrafficPolicies map[string][]gwv1.PolicyAncestorStatus
	AuthorizationPolicies  map[string][]metav1.Condition
}

// Waypoint is a waypoint Gateway to deploy.
type Waypoint struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// For is the waypoint-for value: service, workload, all or none.
	For string `json:"for"`
	// Identity is the SPIFFE ID its pods run as.
	Identity string `json:"identity"`
}

// Diagnostic is a problem found while translating an object.
type Diagnostic struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Message   string `json:"message"`
}

// Translate computes the per-proxy configuration and status for a
// snapshot. It never fails: problems become conditions or diagnostics.
func Translate(ix *model.Index) *Output {
	return translateAll(ix).out
}

func translateAll(ix *model.Index) *translator {
	t := &translator{
		ix: ix,
		out: &Output{
			Workloads:      map[string]*warrenv1.Workload{},
			Services:       map[string]*warrenv1.Service{},
			Authorizations: map[string]*warrenv1.Authorization{},
			L7Services:     map[string]*warrenv1.L7Service{},
			Status: Status{
				GatewayClasses:         map[string][]metav1.Condition{},
				Gateways:               map[string]gwv1.GatewayStatus{},
				HTTPRoutes:             map[string][]gwv1.RouteParentStatus{},
				GRPCRoutes:             map[string][]gwv1.RouteParentStatus{},
				BackendTrafficPolicies: map[string][]gwv1.PolicyAncestorStatus{},
				AuthorizationPolicies:  map[string][]metav1.Condition{},
			},
		},
	}
	// Order matters only where one step reads another's result.
	t.backendTrafficPolicies() // Services carry them
	t.authorizationPolicies()  // Workloads and L7Services list them
	t.workloads()
	t.services()
	t.trustBundle()
	t.gatewayClasses()
	t.gateways()      // listeners, before routes attach to them
	t.routes()        // route status, attachments
	t.l7Services()    // route tables of waypoint-served Services
	t.gatewayStatus() // attached route counts, Programmed
	sortDiagnostics(t.out.Diagnostics)
	return t
}

type translator struct {
	ix  *model.Index
	out *Output

	backendPolicies map[string]*warrenv1.BackendTrafficPolicy // by Service ns/name
	authz           authzIndex
	routeList       []*routeInfo
	listeners       map[string][]*listenerInfo // by Gateway ns/name
}

func (t *translator) diag(kind, ns, name, msg string) {
	t.out.Diagnostics = append(t.out.Diagnostics, Diagnostic{Kind: kind, Namespace: ns, Name: name, Message: msg})
}

func sortDiagnostics(d []Diagnostic) {
	sort.Slice(d, func(i, j int) bool {
		a, b := d[i], d[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Message < b.Message
	})
}
