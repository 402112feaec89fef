// Package file is the YAML source of istiod-lite: a directory of
// multi-document YAML files describing the mesh — Namespaces, Pods (with IPs
// and node names), Services, Gateway API objects, policies — read into a
// model.Snapshot and watched with fsnotify. A bad file is reported as
// "file:line: field: problem" and the last good snapshot stays in force.
//
// It does no translation and no network I/O.
package file
