// Package accesslog writes the waypoint's access log: one JSON object per
// request on an io.Writer the binary provides (stdout, a file).
//
// It owns the entry format and serialized writes; it never decides what
// happened to a request (the chain fills the Entry) and writes nowhere
// but the writer it is given.
package accesslog
