// Package router picks the route for a request: it compiles the
// control plane's L7Service (per port: a producer RouteTable and consumer
// tables by client namespace) and, given the destination port and the
// client's namespace, chooses the table and returns its first matching
// route. Tables arrive already in precedence order (docs/control-plane.md),
// so matching is first-match-wins and never re-sorts.
//
// Match kinds: path Exact, Prefix (element-wise: "/abc" matches "/abc",
// "/abc/" and "/abc/def", never "/abcd"; a trailing "/" on the prefix is
// ignored) and RegularExpression (RE2, whole path); headers and query
// parameters (Exact or RegularExpression, whole value); method; gRPC
// service and method.
//
// It owns matching only: it never modifies requests (filters does), never
// chooses backends (lb does) and never logs.
package router
