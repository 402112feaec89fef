package client

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
)

// TypePrefix starts every Warren type URL.
const TypePrefix = "type.googleapis.com/"

// Type URLs of the resources istiod-lite serves (warren.v1 messages packed
// in Any).
const (
	TypeWorkload      = TypePrefix + "warren.v1.Workload"
	TypeService       = TypePrefix + "warren.v1.Service"
	TypeAuthorization = TypePrefix + "warren.v1.Authorization"
	TypeTrustBundle   = TypePrefix + "warren.v1.TrustBundle"
	TypeL7Service     = TypePrefix + "warren.v1.L7Service"
)

// TrustBundleName is the name of the single TrustBundle resource.
const TrustBundleName = "trust-bundle"

// TypeURL is the type URL of m's message type.
func TypeURL(m proto.Message) string {
	return TypePrefix + string(m.ProtoReflect().Descriptor().FullName())
}

// Kind is the kind of proxy a node ID names.
type Kind string

// Proxy kinds.
const (
	KindZtunnel  Kind = "ztunnel"
	KindWaypoint Kind = "waypoint"
)

// NodeID is the identity a proxy claims in node.id of its first xDS
// request. Its text form is
//
//	ztunnel~<node-name>                          one ztunnel per Kubernetes node
//	waypoint~<namespace>/<gateway-name>~<pod>    one waypoint pod of a Gateway
//
// Every component is a Kubernetes object name: lower-case letters, digits,
// '-' and '.', at most 253 characters. The control plane checks the claim
// against the caller's token before serving anything.
type NodeID struct {
	Kind Kind
	// Node is the ztunnel's Kubernetes node.
	Node string
	// Namespace and Gateway name the waypoint's Gateway; Pod is the
	// waypoint pod (several replicas share one Gateway).
	Namespace, Gateway, Pod string
}

// ZtunnelNodeID is the node ID of the ztunnel on node.
func ZtunnelNodeID(node string) NodeID { return NodeID{Kind: KindZtunnel, Node: node} }

// WaypointNodeID is the node ID of waypoint pod pod of Gateway namespace/gateway.
func WaypointNodeID(namespace, gateway, pod string) NodeID {
	return NodeID{Kind: KindWaypoint, Namespace: namespace, Gateway: gateway, Pod: pod}
}

// String is the wire form (see NodeID).
func (n NodeID) String() string {
	switch n.Kind {
	case KindZtunnel:
		return string(KindZtunnel) + "~" + n.Node
	case KindWaypoint:
		return string(KindWaypoint) + "~" + n.Namespace + "/" + n.Gateway + "~" + n.Pod
	}
	return string(n.Kind) + "~?"
}

// GatewayRef is "<namespace>/<gateway-name>" for a waypoint, the value of
// L7Service.waypoint for the Services it serves; "" for other kinds.
func (n NodeID) GatewayRef() string {
	if n.Kind != KindWaypoint {
		return ""
	}
	return n.Namespace + "/" + n.Gateway
}

// Validate checks the components of n.
func (n NodeID) Validate() error {
	switch n.Kind {
	case KindZtunnel:
		return checkName("node name", n.Node)
	case KindWaypoint:
		for _, c := range []struct{ what, v string }{{"namespace", n.Namespace}, {"gateway name", n.Gateway}, {"pod name", n.Pod}} {
			if err := checkName(c.what, c.v); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown proxy kind %q (want %q or %q)", n.Kind, KindZtunnel, KindWaypoint)
}

// ParseNodeID parses and validates the wire form of a node ID.
func ParseNodeID(s string) (NodeID, error) {
	kind, rest, ok := strings.Cut(s, "~")
	if !ok {
		return NodeID{}, fmt.Errorf("xds: node id %q: want ztunnel~<node> or waypoint~<namespace>/<gateway>~<pod>", s)
	}
	var n NodeID
	switch Kind(kind) {
	case KindZtunnel:
		n = ZtunnelNodeID(rest)
	case KindWaypoint:
		gw, pod, ok := strings.Cut(rest, "~")
		ns, name, ok2 := strings.Cut(gw, "/")
		if !ok || !ok2 {
			return NodeID{}, fmt.Errorf("xds: node id %q: a waypoint is waypoint~<namespace>/<gateway>~<pod>", s)
		}
		n = WaypointNodeID(ns, name, pod)
	default:
		n = NodeID{Kind: Kind(kind)}
	}
	if err := n.Validate(); err != nil {
		return NodeID{}, fmt.Errorf("xds: node id %q: %w", s, err)
	}
	return n, nil
}

func checkName(what, v string) error {
	if v == "" {
		return fmt.Errorf("empty %s", what)
	}
	if len(v) > 253 {
		return fmt.Errorf("%s longer than 253 characters", what)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("%s %q: character %q is not allowed (lower-case letters, digits, '-', '.')", what, v, c)
		}
	}
	if v[0] == '-' || v[0] == '.' || v[len(v)-1] == '-' || v[len(v)-1] == '.' {
		return fmt.Errorf("%s %q must start and end with a letter or digit", what, v)
	}
	return nil
}
