// Package model is istiod-lite's view of the world: a Snapshot of every
// object it watches (from Kubernetes or a directory of YAML) and an Index
// over it — workloads by IP and name, services by VIP and hostname, routes
// by parent, gateways, grants — plus the mesh's label rules: enrolment
// (warren.io/dataplane-mode) and waypoint binding (warren.io/use-waypoint,
// most specific wins, "none" opts out, checked against waypoint-for).
//
// It is pure data and pure functions: no I/O, no clients, no logging. The
// sources fill Snapshots; translate reads Indexes.
package model
