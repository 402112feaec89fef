// Package listener is the waypoint's accept side: given a connection (an
// HBONE stream or a plaintext TCP connection) and what it is for (Meta:
// source identity, destination Service and port, declared protocol), it
// chooses how to serve it — HTTP/1.1 and h2c prior knowledge (gRPC rides
// on h2c) through one net/http Server with header-size and header-read
// timeouts, opaque TCP to the Handler's ServeTCP — sniffing the first
// bytes when the protocol is PROTOCOL_UNSPECIFIED (h2c preface, an
// HTTP/1.x request line, else TCP; silence past the sniff timeout means a
// server-first protocol, so TCP).
//
// It owns connection handling and protection against bad clients
// (oversized or slow headers, malformed requests, HTTP/2 rapid reset are
// net/http's answers: 431, 400, connection close, GOAWAY); it never
// routes, authorizes or dials, and never logs (net/http's error log is
// discarded unless Options.ErrorLog is set).
package listener
