#!/usr/bin/env bash
# conformance.sh runs the upstream Gateway API conformance suite
# (sigs.k8s.io/gateway-api/conformance v1.6.3, unmodified; profiles MESH-HTTP and
# MESH-GRPC) against Warren on the local cluster — `make conformance`. As root.
#
#   hack/conformance.sh          run the suite (make conformance)
#   hack/conformance.sh readme   only rewrite conformance/reports/README.md from the files there
#
# e2e/conformance's TestConformance brings the local cluster up (or reuses the
# running default cluster), imports the suite's images, installs the Gateway API
# experimental CRDs, applies manifests/install/ when it exists, creates the
# waypoints, then runs the suite with the flags below. Outputs, for a run on <date>:
#
#   conformance/reports/<date>-mesh.yaml          the suite's report (--report-output)
#   conformance/reports/<date>-mesh.command.txt   the exact command
#   conformance/reports/<date>-mesh.results.txt   per-test outcomes from the go test log
#   conformance/reports/README.md                 the tables of every report there, newest first
#                                                 (e2e/conformance/cmd/conformance-table), each with
#                                                 its <name>.notes.md when someone wrote one
#   .cache/conformance/<date>-mesh.log            the full go test -v log
#
# Environment:
#   CONFORMANCE_RUN_TEST=<ShortName>   run one test (--run-test); files are named
#                                      <date>-mesh-<ShortName>.* and README.md is kept
#   CONFORMANCE_SKIP_INSTALL=1         do not install Warren even if manifests/install
#                                      exists: a baseline against plain Kubernetes;
#                                      files are named <date>-mesh-noinstall.*
#   CONFORMANCE_KEEP_CLUSTER=1         leave a cluster the run brought up running
#   CONFORMANCE_TIMEOUT=90m            go test -timeout: the hard bound of the run
#   CONFORMANCE_EXTRA_ARGS="..."       more suite flags (e.g. --debug)
#
# The exit status is go test's: non-zero while any test fails.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

reports=conformance/reports

# write_readme renders every full-run report in $reports (newest first) into README.md.
write_readme() {
  {
    echo "# Gateway API conformance reports"
    echo
    echo "Written by \`make conformance\` (hack/conformance.sh): the upstream suite"
    echo "\`sigs.k8s.io/gateway-api/conformance\` v1.6.3, unmodified, profiles MESH-HTTP and"
    echo "MESH-GRPC, on the local cluster (docs/local-cluster.md), claiming the features in"
    echo "[e2e/conformance/features.txt](../../e2e/conformance/features.txt). Per run \`<name>\`:"
    echo "\`<name>.yaml\` (the suite's report), \`.command.txt\` (the exact command),"
    echo "\`.results.txt\` (each test's outcome and the runner's notes, from the go test log),"
    echo "\`.notes.md\` (optional, written by hand). This page shows every report here, newest"
    echo "first; hack/conformance.sh rewrites it after each full run (\`hack/conformance.sh readme\`"
    echo "rewrites it alone), from those files, with"
    echo "\`go run ./e2e/conformance/cmd/conformance-table -report R.yaml -log R.results.txt -command R.command.txt\`."
    for f in $(ls -r "$reports"/*.yaml); do
      n=$(basename "$f" .yaml)
      case "$n" in *-mesh|*-mesh-noinstall) ;; *) continue ;; esac # single-test runs are left out
      echo
      echo "## $n"
      echo
      go run ./e2e/conformance/cmd/conformance-table -report "$f" -log "$reports/$n.results.txt" -command "$reports/$n.command.txt"
      if [ -f "$reports/$n.notes.md" ]; then
        echo
        echo "### Notes on $n (written by hand)"
        echo
        cat "$reports/$n.notes.md"
      fi
    done
  } > "$reports/README.md.tmp"
  mv "$reports/README.md.tmp" "$reports/README.md"
  echo "conformance: wrote $reports/README.md"
}

if [ "${1:-}" = readme ]; then
  write_readme
  exit 0
fi

day=$(date -u +%Y-%m-%d)
name="$day-mesh"
[ -z "${CONFORMANCE_SKIP_INSTALL:-}" ] || name="$name-noinstall"
[ -z "${CONFORMANCE_RUN_TEST:-}" ] || name="$name-$CONFORMANCE_RUN_TEST"
mkdir -p "$reports" .cache/conformance
features=$(sed 's/#.*//' e2e/conformance/features.txt | tr -d ' \t' | grep -v '^$' | paste -sd, -)
version=$(git describe --always --dirty 2>/dev/null || echo dev)

# go test runs the test in its package directory: paths are relative to it.
args=(
  --conformance-profiles=MESH-HTTP,MESH-GRPC
  --supported-features="$features"
  --namespace-labels=warren.io/dataplane-mode=ambient,warren.io/use-waypoint=waypoint
  --report-output="../../$reports/$name.yaml"
  --organization=warren-mesh
  --project=warren
  --url=https://github.com/warren-mesh/warren
  --version="$version"
  --contact=https://github.com/warren-mesh/warren/issues
)
[ -z "${CONFORMANCE_RUN_TEST:-}" ] || args+=(--run-test="$CONFORMANCE_RUN_TEST")
# shellcheck disable=SC2206 # word splitting wanted
[ -z "${CONFORMANCE_EXTRA_ARGS:-}" ] || args+=($CONFORMANCE_EXTRA_ARGS)
cmd=(go test -tags conformance -count=1 -v -timeout "${CONFORMANCE_TIMEOUT:-90m}" -parallel 8
  ./e2e/conformance -run '^TestConformance$' -args "${args[@]}")

{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) make conformance (hack/conformance.sh), run as root from the repository root:"
  env_line="GOTOOLCHAIN=local GOFLAGS=-buildvcs=false"
  for v in CONFORMANCE_SKIP_INSTALL CONFORMANCE_KEEP_CLUSTER; do
    [ -z "${!v:-}" ] || env_line="$env_line $v=${!v}"
  done
  printf '%s' "$env_line"
  printf ' %q' "${cmd[@]}"
  echo
} > "$reports/$name.command.txt"
echo "conformance: $(tail -n1 "$reports/$name.command.txt")"

log=.cache/conformance/$name.log
start=$(date +%s)
set +e
"${cmd[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
echo "conformance: go test exited $rc after $(( $(date +%s) - start ))s; log $log"

grep -E -e '--- (PASS|FAIL|SKIP): TestConformance' -e 'Skipping [A-Za-z0-9]+: ' -e '^(ok|FAIL|PASS)\b' \
  -e '\.go:[0-9]+: (TIMING |setup: )' "$log" \
  > "$reports/$name.results.txt" || true
if [ ! -f "$reports/$name.yaml" ]; then
  echo "conformance: no report was written ($reports/$name.yaml): the suite did not get to run; see $log" >&2
  exit $(( rc == 0 ? 1 : rc ))
fi
[ -n "${CONFORMANCE_RUN_TEST:-}" ] || write_readme
exit "$rc"
