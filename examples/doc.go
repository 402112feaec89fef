// Package examples embeds Warren's default configuration directory: a
// small mesh described entirely in YAML (namespaces, pods with their IPs
// and nodes, Services, a waypoint and an HTTPRoute splitting traffic 90/10)
// that istiod-lite serves in file mode when no directory is given, and that
// the docs and tests use as a worked example.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed *.yaml
var files embed.FS

// FS returns the example YAML files.
func FS() fs.FS { return files }
