package xds

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/ca"
	"github.com/warren-mesh/warren/istiod-lite/xds/client"
)

// Type URLs of Warren's resources (see client for the definitions).
const (
	TypeWorkload      = client.TypeWorkload
	TypeService       = client.TypeService
	TypeAuthorization = client.TypeAuthorization
	TypeTrustBundle   = client.TypeTrustBundle
	TypeL7Service     = client.TypeL7Service
	TrustBundleName   = client.TrustBundleName
)

// NodeID is a proxy's node ID; see client.NodeID for the format.
type NodeID = client.NodeID

// Proxy kinds.
const (
	KindZtunnel  = client.KindZtunnel
	KindWaypoint = client.KindWaypoint
)

// ParseNodeID parses the wire form of a node ID.
func ParseNodeID(s string) (NodeID, error) { return client.ParseNodeID(s) }

// Resources is a full configuration: type URL → resource name → message.
type Resources map[string]map[string]proto.Message

// Proxy is one connected xDS stream. The exported fields are fixed when
// the stream is accepted; everything else is the server's.
type Proxy struct {
	// ID is the node ID in its wire form.
	ID string
	// Conn is unique per stream ("<id>#<n>"): a proxy that reconnects
	// before its old stream is gone holds two.
	Conn string
	// Node is the parsed node ID.
	Node NodeID
	// Caller is who the stream's token authenticated (nil when the server
	// allows unauthenticated streams, the test-only plaintext mode).
	Caller *ca.Caller
	// Peer is the remote address.
	Peer string
	// ConnectedAt is when the stream was accepted.
	ConnectedAt time.Time

	kick chan struct{}

	mu    sync.Mutex
	types map[string]*typeState
	// dirty holds names changed since the last push, per type;
	// dirtyAll types must be compared in full.
	dirty      map[string]map[string]struct{}
	dirtyAll   map[string]bool
	dirtySince map[string]time.Time
	// order is the order in which types were first subscribed.
	order []string
}

// Scope decides whether proxy p receives resource name of typeURL. It runs
// under the server's locks on every push: keep it fast, pure, and never
// call back into the Server. Changing what a Scope decides for resources
// that did not change needs Server.Rescope.
type Scope func(p *Proxy, typeURL, name string, res proto.Message) bool

// DefaultScope is what each proxy kind needs:
//   - a ztunnel gets every Workload, Service, Authorization and the
//     TrustBundle (it routes to any destination) — everything but L7Service;
//   - a waypoint gets the L7Service resources of the Services it serves
//     (L7Service.waypoint equal to its "<namespace>/<gateway>") and every
//     other type (Workloads for endpoints, Services, Authorizations, the
//     TrustBundle);
//   - other kinds get nothing.
func DefaultScope(p *Proxy, typeURL, name string, res proto.Message) bool {
	switch p.Node.Kind {
	case KindZtunnel:
		return typeURL != TypeL7Service
	case KindWaypoint:
		if l7, ok := res.(*warrenv1.L7Service); ok {
			return l7.GetWaypoint() == p.Node.GatewayRef()
		}
		return typeURL != TypeL7Service
	}
	return false
}

// Authorizer decides whether an authenticated caller may stream the
// configuration of node. A non-nil error refuses the stream with
// PermissionDenied and the error's text.
type Authorizer func(caller *ca.Caller, node NodeID) error

// DefaultNodeProxies are the service accounts allowed to act as ztunnel.
var DefaultNodeProxies = []string{"warren-system/ztunnel"}

// DefaultAuthorizer allows:
//   - a ztunnel node ID when the caller's service account ("<ns>/<name>")
//     is one of nodeProxies (DefaultNodeProxies when empty) and the node
//     its token is bound to is the node it names;
//   - a waypoint node ID when the caller is the service account named
//     after the Gateway in the Gateway's namespace (how the waypoint
//     deployer runs waypoint pods).
func DefaultAuthorizer(nodeProxies []string) Authorizer {
	if len(nodeProxies) == 0 {
		nodeProxies = DefaultNodeProxies
	}
	allowed := slices.Clone(nodeProxies)
	return func(caller *ca.Caller, node NodeID) error {
		sa := caller.Namespace + "/" + caller.ServiceAccount
		switch node.Kind {
		case KindZtunnel:
			if !slices.Contains(allowed, sa) {
				return fmt.Errorf("service account %s may not act as a ztunnel (allowed: %v)", sa, allowed)
			}
			if caller.Node == "" {
				return fmt.Errorf("ztunnel %s presented a token not bound to a node; use a pod-bound projected token", sa)
			}
			if caller.Node != node.Node {
				return fmt.Errorf("token of %s is bound to node %q, not %q: a ztunnel gets only its own node's config", sa, caller.Node, node.Node)
			}
			return nil
		case KindWaypoint:
			if caller.Namespace != node.Namespace || caller.ServiceAccount != node.Gateway {
				return fmt.Errorf("service account %s may not act as waypoint %s (want %s/%s)", sa, node.GatewayRef(), node.Namespace, node.Gateway)
			}
			return nil
		}
		return fmt.Errorf("unknown proxy kind %q", node.Kind)
	}
}
