#!/usr/bin/env bash
# deps.sh installs what a fresh machine lacks for one purpose, idempotently.
#
#   hack/deps.sh test|generate|bench|cluster|all
#
# Debian packages are installed with apt only when dpkg says they are missing, so a
# second run costs a few dpkg queries. Go tools are pinned in go.mod (tool lines) and
# built into .cache/bin by `go build`, which caches them.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

pkgs_test="openssl ca-certificates iproute2"
pkgs_generate="protobuf-compiler clang llvm libbpf-dev"
pkgs_bench="openssl stunnel4 haproxy nginx wrk nghttp2-client iproute2 linux-perf"
pkgs_cluster="containerd runc containernetworking-plugins busybox-static iproute2 iptables curl tcpdump"

want=""
for g in "${@:-test}"; do
  case "$g" in
    test) want="$want $pkgs_test" ;;
    generate) want="$want $pkgs_generate" ;;
    bench) want="$want $pkgs_bench" ;;
    cluster) want="$want $pkgs_cluster" ;;
    all) want="$want $pkgs_test $pkgs_generate $pkgs_bench $pkgs_cluster" ;;
    *) echo "deps: unknown group $g (test|generate|bench|cluster|all)" >&2; exit 2 ;;
  esac
done

missing=()
for p in $(printf '%s\n' $want | sort -u); do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing Debian packages ${missing[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # A stale package index is the usual reason an install fails on a fresh machine.
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

case " $* " in
  *" generate "*|*" all "*)
    mkdir -p "$top/.cache/bin"
    cd "$top"
    GOTOOLCHAIN=local go build -o .cache/bin/ google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc
    ;;
esac
exit 0
