// Package upstream is how the waypoint reaches an endpoint: the Endpoint
// description, the Dialer interface the transport plugs into (plain TCP
// here, HBONE in waypoint/tunnel), and Client, which keeps HTTP/1.1
// keep-alive pools and HTTP/2 (h2c prior knowledge) multiplexed
// connections per endpoint on top of any Dialer.
//
// It owns connection reuse and nothing else: it never chooses endpoints
// (lb does), never retries (the chain does, with retry's budget), never
// logs and keeps no global state. Errors are prefixed "waypoint: upstream".
package upstream
