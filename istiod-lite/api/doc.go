// Package api holds the control plane's wire types: protobuf definitions and
// their generated Go code, one sub-package per API (ca/v1, later the xDS IR).
// It is the only part of istiod-lite besides the client packages that the
// data plane may import, so it contains no logic.
package api
