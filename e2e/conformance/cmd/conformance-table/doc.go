// Command conformance-table prints a Gateway API conformance report (the
// suite's --report-output YAML) as markdown: one row per profile and level
// with the suite's counts and failed tests, and — given the `go test -v` log
// of the same run — one row per mesh test with its features, the profiles
// that count it and its outcome (pass, fail, or skip with the suite's
// reason). hack/conformance.sh writes its output to
// conformance/reports/README.md.
//
//	conformance-table -report R.yaml [-log R.log] [-command R.command.txt]
package main
