// Package filters implements the Gateway API HTTPRoute/GRPCRoute filters
// the waypoint applies to a matched route or backend: request and
// response header modifiers, RequestRedirect (scheme, hostname, port and
// path with the spec's port rules), URLRewrite (hostname, full path,
// prefix replacement on segment boundaries), RequestMirror sampling and
// CORS (preflight answers and headers on actual requests).
//
// Functions here are pure transformations of net/http values: they never
// send requests (the chain sends mirrors through upstream), never choose
// routes or endpoints, and never log.
package filters
