// Package nodeproto is the node agent ↔ ztunnel protocol: how the agent
// hands enrolled pods, with their network namespaces, to the node's
// ztunnel, and how ztunnel answers with the inbound listeners capture
// steers to.
//
// Transport: a unix SOCK_SEQPACKET socket (default DefaultSocket) that the
// agent listens on and ztunnel dials. One datagram is one JSON message;
// file descriptors travel beside it with SCM_RIGHTS and the message's "fds"
// field says what each one is. Version 1:
//
//	agent  → ztunnel  hello          {version, node}          fds: [origdst] (read-only BPF map, optional)
//	ztunnel → agent   hello          {version}                (or {error} and close)
//	agent  → ztunnel  add            {id, pod}                fds: [netns]
//	agent  → ztunnel  remove         {id, uid}
//	agent  → ztunnel  snapshot_done  {id}                     after the adds that follow each (re)connect
//	ztunnel → agent   ack            {id, error?}             fds: inbound listeners (for add)
//
// After every connect the agent first sends the complete set of enrolled
// pods (add…, snapshot_done); ztunnel then drops pods it serves that were
// not in it. ztunnel keeps serving its pods while disconnected. Every
// request is acknowledged before the next is sent.
//
// The package is imported by ztunnel: it depends only on the standard
// library and golang.org/x/sys, never on other Warren packages. It does
// not decide anything about capture and never logs.
package nodeproto
