// Package retry owns the waypoint's retry decisions: the route's GEP-1731
// policy (which status codes, how many retries, backoff) and the
// XBackendTrafficPolicy retry budget of a backend Service (retries may be
// at most a percentage of the requests sent to it over an interval, with
// a minimum rate that is always allowed).
//
// It decides and counts; it never sends requests (the chain does), never
// sleeps on its own (it returns durations), and never logs.
package retry
