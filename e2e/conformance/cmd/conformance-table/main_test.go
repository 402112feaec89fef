package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sampleLog = `    conformance_test.go:42: TIMING setup total 12s; Warren installed: false
    setup.go:1: not a note
    setup.go:30: setup: /r/manifests/install does not exist: Warren is NOT installed
=== RUN   TestConformance/MeshBasic
    --- PASS: TestConformance/MeshBasic (3.20s)
        --- PASS: TestConformance/MeshBasic/0_request_to_'echo/' (3.10s)
=== RUN   TestConformance/MeshPorts
    mesh-ports.go:1: Skipping MeshPorts: suite does not support HTTPRouteParentRefPort
    --- SKIP: TestConformance/MeshPorts (0.00s)
    --- FAIL: TestConformance/MeshHTTPRouteMatching (0.05s)
        --- FAIL: TestConformance/MeshHTTPRouteMatching/1_'/v2/x' (31.10s)
        --- PASS: TestConformance/MeshHTTPRouteMatching/2 (3.00s)
`

const sampleReport = `apiVersion: gateway.networking.k8s.io/v1
kind: ConformanceReport
date: "2026-01-02T03:04:05Z"
gatewayAPIChannel: experimental
gatewayAPIVersion: v1.6.3
implementation:
  contact: ["x"]
  organization: warren-mesh
  project: warren
  url: https://example.invalid
  version: dev
mode: default
profiles:
- core:
    failedTests: [MeshHTTPRouteMatching]
    result: failure
    statistics: {Failed: 1, Passed: 1, Skipped: 0}
  extended:
    result: success
    statistics: {Failed: 0, Passed: 0, Skipped: 0}
    supportedFeatures: [MeshConsumerRoute]
    unsupportedFeatures: [MeshHTTPRouteRewritePath]
  name: MESH-HTTP
  summary: Core tests failed with 1 test failures.
`

func TestTable(t *testing.T) {
	dir := t.TempDir()
	rep, lg := filepath.Join(dir, "r.yaml"), filepath.Join(dir, "r.log")
	if err := os.WriteFile(rep, []byte(sampleReport), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lg, []byte(sampleLog), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(&out, rep, lg, ""); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		"| MESH-HTTP | core | failure | 1 | 1 | 0 | MeshHTTPRouteMatching |",
		"| MeshBasic | Mesh | MESH-HTTP (core), MESH-GRPC (core) | pass | 3.2 s |",
		"| MeshPorts | Mesh, HTTPRoute, HTTPRouteParentRefPort, HTTPRouteResponseHeaderModification | none | skip: suite does not support HTTPRouteParentRefPort | 0.0 s |",
		"| MeshHTTPRouteMatching | Mesh, HTTPRoute | MESH-HTTP (core) | fail | 31.1 s |",
		"| MeshHTTPRouteRewritePath | Mesh, HTTPRoute, MeshHTTPRouteRewritePath | MESH-HTTP (extended) | not run |",
		"Extended features claimed: MeshConsumerRoute; not claimed: MeshHTTPRouteRewritePath.",
		"- TIMING setup total 12s; Warren installed: false\n- setup: /r/manifests/install does not exist: Warren is NOT installed\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}
