#!/usr/bin/env bash
# demo.sh: the smallest real Warren that runs today. It starts istiod-lite's
# certificate service in file mode (no cluster yet), then acts as a workload
# and as a node's ztunnel: issues SVIDs over gRPC/TLS, shows one with
# openssl, and shows node-scoped impersonation being allowed and refused.
# It grows into the local-cluster demo as the other issues land.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=$top/bin
work=$(mktemp -d /tmp/warren-demo.XXXXXX)
grpc=127.0.0.1:${DEMO_GRPC_PORT:-15012}
mon=127.0.0.1:${DEMO_MONITORING_PORT:-15014}
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

mkdir -p "$work/config"
# Workloads the control plane knows about (file mode: Pods with their node).
cat > "$work/config/pods.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop}
spec: {serviceAccountName: web, nodeName: node-a, containers: [{name: app, image: web}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db-1, namespace: shop}
spec: {serviceAccountName: db, nodeName: node-b, containers: [{name: app, image: db}]}
YAML
tok() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
ztok=$(tok); wtok=$(tok)
cat > "$work/tokens.yaml" <<YAML
tokens:
- {token: "$ztok", serviceAccount: warren-system/ztunnel, node: node-a}
- {token: "$wtok", serviceAccount: shop/web, node: node-a}
YAML
echo "$ztok" > "$work/ztunnel.token"; echo "$wtok" > "$work/web.token"

say "Starting istiod-lite (file mode): CA on $grpc, metrics and /debug/ca on $mon"
"$bin/istiod-lite" -ca-data-dir "$work/ca" -bootstrap-tokens "$work/tokens.yaml" -config-dir "$work/config" \
  -grpc-addr "$grpc" -monitoring-addr "$mon" -root-cert-out "$work/root.pem" 2> "$work/istiod-lite.log" &
pid=$!
for _ in $(seq 100); do
  grep -q "certificate service ready" "$work/istiod-lite.log" 2>/dev/null && [ -s "$work/root.pem" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/istiod-lite.log"; exit 1; }
  sleep 0.1
done
grep -q "certificate service ready" "$work/istiod-lite.log" || { echo "istiod-lite did not become ready"; cat "$work/istiod-lite.log"; exit 1; }
echo "root CA persisted in $work/ca ($(ls "$work/ca" | tr '\n' ' '))"

ctl() { "$bin/warrenctl" x ca issue --addr "$grpc" --root-cert "$work/root.pem" "$@"; }

say "A workload (shop/web) asks for its own identity"
run ctl --token-file "$work/web.token" > "$work/web.pem"
openssl x509 -in "$work/web.pem" -noout -issuer -dates -ext subjectAltName,keyUsage,extendedKeyUsage,basicConstraints
echo "verify against the trust bundle:"; openssl verify -CAfile "$work/root.pem" "$work/web.pem"

say "ztunnel on node-a asks for shop/web (a pod on its node): allowed"
run ctl --token-file "$work/ztunnel.token" --identity spiffe://cluster.local/ns/shop/sa/web | openssl x509 -noout -ext subjectAltName

say "ztunnel on node-a asks for shop/db (a pod on node-b): refused"
if ctl --token-file "$work/ztunnel.token" --identity spiffe://cluster.local/ns/shop/sa/db >/dev/null 2>"$work/err"; then
  echo "UNEXPECTED: certificate issued"; exit 1
fi
cat "$work/err"

say "The workload asks for someone else's identity: refused"
if ctl --token-file "$work/web.token" --identity spiffe://cluster.local/ns/shop/sa/db >/dev/null 2>"$work/err"; then
  echo "UNEXPECTED: certificate issued"; exit 1
fi
cat "$work/err"

say "What the control plane says about itself"
run curl -s "http://$mon/debug/ca"
curl -s "http://$mon/metrics" | grep -E '^(citadel_|warren_ca_)'

say "istiod-lite log (refusals are logged with caller, node and reason)"
cat "$work/istiod-lite.log"

say "Done. Shown: a persisted self-signed root, SPIFFE SVIDs over gRPC/TLS, node-scoped impersonation, metrics."
