// Package status is istiod-lite's status writer: it takes the status that
// translation computed (translate.Status, conditions without
// lastTransitionTime) and makes the objects in the API server carry it.
//
// Rules: compare desired with current ignoring lastTransitionTime; keep a
// condition's time when its status, reason, message and observedGeneration
// are unchanged, set it to now otherwise; write only on change, through the
// status subresource (typed Gateway API clients, the dynamic client for
// Warren's AuthorizationPolicy); on a conflict re-read and retry; leave
// other implementations' data alone (route parents and policy ancestors of
// other controllers, condition types of other domains); remove Warren's
// stale route parents and policy ancestors; skip objects that disappeared
// or whose spec changed since the translation (the next one covers them).
//
// It owns writing status and nothing else: it never writes spec or
// metadata, never translates, and never modifies the snapshot objects it
// compares against (it deep-copies before changing anything).
package status
