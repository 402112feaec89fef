// Package tunnel connects the waypoint's L7 engine to HBONE
// (ztunnel/hbone), both ways:
//
//   - Inbound is the hbone.Handler of the waypoint's :15008 listener. It
//     resolves each CONNECT's :authority in the configuration — a Service
//     frontend (VIP:port) this waypoint has route tables for, or a pod
//     (IP:port) whose workload traffic it serves (waypoint-for
//     workload|all) — refuses what it does not serve, and hands the
//     accepted stream to Engine.ServeConn with the verified peer identity,
//     its namespace (which selects consumer routes) and the client's
//     address.
//   - Dialer is the upstream.Dialer for mesh endpoints: an HBONE tunnel
//     from the waypoint's own SVID to <pod IP>:15008 with :authority
//     <pod IP>:<target port>, requiring the peer to present the
//     endpoint's identity (the destination ztunnel answers as the pod),
//     over a shared hbone.Pool (pooled, HTTP/2-multiplexed), sending
//     Forwarded and the trace context.
//
// Authorization is not done here: every verified peer of the trust domain
// may open a tunnel; AuthorizationPolicies apply in the engine, per
// request. The package never logs; it counts what it refuses.
package tunnel
