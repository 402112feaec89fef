package main

// The ztunnel admin API as warrenctl reads it — a contract proposed by
// warrenctl while ztunnel/admin is being written (docs/warrenctl.md,
// "ztunnel admin contract"). ztunnel serves it on localhost:15000 in its
// own network namespace; warrenctl reaches it by port-forward or, with
// --ztunnel-addr, directly.
//
//	GET /config_dump        ztunnelConfigDump
//	GET /debug/connections  ztunnelConnections
//
// Resources are the xDS messages ztunnel holds (warren.v1.Workload,
// Service, Authorization) in protojson, keyed by resource name, so the
// dump is exactly what istiod-lite sent; certificates mirror
// certs.IdentityStatus plus the chain. Unknown fields are ignored, so
// ztunnel may add more.

import (
	"encoding/json"
	"time"
)

type ztunnelConfigDump struct {
	// Node is the node the ztunnel serves.
	Node string `json:"node"`
	// Workloads, Services and Policies by xDS resource name, each the
	// protojson of warren.v1.Workload / Service / Authorization.
	Workloads map[string]json.RawMessage `json:"workloads"`
	Services  map[string]json.RawMessage `json:"services"`
	Policies  map[string]json.RawMessage `json:"policies"`
	// Certificates: one per identity ztunnel holds (or fetches) an SVID
	// for — one per service account of the node's mesh pods.
	Certificates []ztunnelCertificate `json:"certificates"`
	// TrustBundle is the roots in force, as PEM.
	TrustBundle []string `json:"trustBundle,omitempty"`
}

// ztunnelCertificate is one identity's SVID (certs.IdentityStatus).
type ztunnelCertificate struct {
	Identity string `json:"identity"`
	// State is pending, valid or expired.
	State     string    `json:"state"`
	Serial    string    `json:"serial,omitempty"`
	NotBefore time.Time `json:"notBefore,omitzero"`
	NotAfter  time.Time `json:"notAfter,omitzero"`
	Rotations int       `json:"rotations"`
	// Failures counts consecutive failed fetches.
	Failures  int    `json:"failures"`
	LastError string `json:"lastError,omitempty"`
	// Chain is the leaf then the intermediates.
	Chain []ztunnelChainCert `json:"chain,omitempty"`
	// Pods of the node using the identity ("<ns>/<name>").
	Pods []string `json:"pods,omitempty"`
}

type ztunnelChainCert struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	// URIs are the URI SANs (the SPIFFE ID of a leaf).
	URIs []string `json:"uris,omitempty"`
}

type ztunnelConnections struct {
	Connections []ztunnelConnection `json:"connections"`
}

// ztunnelConnection is one proxied connection.
type ztunnelConnection struct {
	// Direction is inbound or outbound (from the node's pods' view).
	Direction string `json:"direction"`
	// Protocol is HBONE or TCP (plaintext).
	Protocol            string `json:"protocol"`
	Source              string `json:"source"`
	SourceWorkload      string `json:"sourceWorkload,omitempty"`
	SourceIdentity      string `json:"sourceIdentity,omitempty"`
	Destination         string `json:"destination"`
	DestinationWorkload string `json:"destinationWorkload,omitempty"`
	DestinationService  string `json:"destinationService,omitempty"`
	DestinationIdentity string `json:"destinationIdentity,omitempty"`
	// Waypoint the connection goes through ("<ns>/<name>").
	Waypoint      string    `json:"waypoint,omitempty"`
	Started       time.Time `json:"started"`
	BytesSent     int64     `json:"bytesSent"`
	BytesReceived int64     `json:"bytesReceived"`
}
