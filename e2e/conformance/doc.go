// Package conformance runs the upstream Gateway API conformance suite
// (sigs.k8s.io/gateway-api/conformance v1.6.3, unmodified) against Warren on
// the local cluster (e2e/cluster): `make conformance`, which runs
// hack/conformance.sh.
//
// TestConformance (build tag conformance) prepares the cluster and then
// calls the suite's own conformance.RunConformance, configured only by the
// suite's flags (`go test ... -args --conformance-profiles=... ...`).
// Preparing means: bring the local cluster up with cluster DNS (or reuse a
// running one), import the images the suite runs under their upstream names,
// install the Gateway API experimental CRDs v1.6.3 from the module cache
// (server-side apply), install Warren by applying every YAML file under
// manifests/install/ when that directory exists (first building every
// warren.local/<name>:<tag> image those files name from ./cmd/<name> and
// loading it into the nodes: there is no registry), and then create the
// waypoints the mesh tests route through: Gateway "waypoint" of class
// warren-waypoint (listener mesh, 15008, HBONE) in gateway-conformance-mesh
// and gateway-conformance-mesh-consumer, whose namespaces carry the
// enrolment labels the suite is also told to set (--namespace-labels).
//
// features.txt lists exactly the features Warren claims (the suite's
// --supported-features); cmd/conformance-table prints a report as the
// markdown tables of conformance/reports/README.md.
//
// The package owns only the conformance run: it must not change the suite's
// behaviour (no test filtering beyond the suite's own flags, no patched
// manifests) and must not be imported outside e2e/.
package conformance
