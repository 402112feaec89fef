// Package translate turns an indexed snapshot (model.Index) into per-proxy
// configuration (warren.v1 resources: Workloads, Services, Authorizations
// and the TrustBundle for ztunnel; L7Services for waypoints) and into the
// status every Gateway API and Warren object should carry.
//
// Translate is pure: no I/O, no clock, no randomness; the same snapshot
// gives the same output, byte for byte, which the golden tests under
// testdata/ pin. Invalid input never vanishes and never stops the rest:
// it becomes a status condition (or a Diagnostic where the object has no
// status of its own) while everything else is still translated.
package translate
