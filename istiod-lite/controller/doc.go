// Package controller is istiod-lite's main loop: it takes snapshots from a
// source (Kubernetes or a YAML directory), translates them (incrementally
// when only pods or routes changed), and hands the result to the sinks —
// the delta-xDS server, the status writer and the waypoint deployer. It
// also drives a root rotation that waits for every proxy to ACK the new
// trust bundle before switching the signer.
//
// It owns no state worth persisting and does no translation of its own.
package controller
