#!/usr/bin/env bash
# image-bins.sh builds the third-party programs the local cluster's images carry
# (e2e/cluster: cluster DNS and the Gateway API conformance images), from the Go
# module proxy, into a cache directory.
#
#   hack/image-bins.sh [component...]      (default: all)
#
# Components and what they build (static, CGO_ENABLED=0):
#   coredns      github.com/coredns/coredns $COREDNS_VERSION (default v1.12.2) with the
#                plugins a cluster DNS and the conformance base manifests use
#                -> coredns
#   istio-echo   istio.io/istio $ISTIO_VERSION pkg/test/echo/cmd/{server,client}
#                (the conformance suite's echo-advanced image) -> istio-echo-server,
#                istio-echo-client
#   echo-basic   sigs.k8s.io/gateway-api/conformance $GATEWAY_API_VERSION echo-basic/
#                (the conformance suite's echo-basic image) -> echo-basic
#
# Each component is built in a throwaway module of its own under
# $WARREN_CACHE/images/<component>-<version>/src (default .cache/...), which
# never touches the project's go.mod; binaries land in .../bin. Built
# components are skipped, so the script is cheap to call repeatedly. It prints
# the bin directory of every component it was asked for, one per line, as
# "<component> <dir>" on its last lines.
set -euo pipefail

COREDNS_VERSION=${COREDNS_VERSION:-v1.12.2}
ISTIO_VERSION=${ISTIO_VERSION:-v0.0.0-20260827124520-eed52ebb66ad}
GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-v1.6.3}
top=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${WARREN_CACHE:-$top/.cache}
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

comps=("$@")
[ ${#comps[@]} -gt 0 ] || comps=(coredns istio-echo echo-basic)

# CoreDNS plugins compiled in, in CoreDNS's own order (core/dnsserver/zdirectives.go
# of v1.12.x, filtered): what a kubeadm-style cluster Corefile uses, plus whoami,
# hosts, file, rewrite and template for tests.
coredns_directives=(reload bind debug ready health prometheus errors log loadbalance cache rewrite template hosts kubernetes file loop forward whoami)

# prepare <dir> <module path> <tools.go imports...>: write go.mod/tools.go and tidy once.
prepare() {
  local dir=$1 mod=$2; shift 2
  local requires=$1; shift
  mkdir -p "$dir/src" "$dir/bin"
  [ -f "$dir/src/.ready" ] && return 0
  (
    cd "$dir/src"
    printf 'module %s\n\ngo 1.26.0\n\nrequire (\n%s)\n' "$mod" "$requires" > go.mod
    {
      echo '//go:build tools'
      echo
      echo '// Package tools pins the main packages built from this throwaway module.'
      echo 'package tools'
      echo
      echo 'import ('
      for p in "$@"; do printf '\t_ "%s"\n' "$p"; done
      echo ')'
    } > tools.go
    go mod tidy -e >/dev/null 2>tidy.log || { cat tidy.log >&2; exit 1; }
    touch .ready
  )
}

build() { # build <dir> <out name> <package> [ldflags]
  local dir=$1 out=$2 pkg=$3 ldflags=${4:-}
  [ -x "$dir/bin/$out" ] && return 0
  echo "image-bins: building $out ($pkg)" >&2
  local start; start=$(date +%s)
  (cd "$dir/src" && go build -trimpath -ldflags "-s -w $ldflags" -o "$dir/bin/$out.tmp" "$pkg")
  mv "$dir/bin/$out.tmp" "$dir/bin/$out"
  echo "image-bins: built $out in $(( $(date +%s) - start ))s" >&2
}

results=()
for c in "${comps[@]}"; do
  case "$c" in
    coredns)
      dir="$CACHE/images/coredns-$COREDNS_VERSION"
      if [ ! -x "$dir/bin/coredns" ]; then
        imports=("github.com/coredns/coredns/coremain")
        for d in "${coredns_directives[@]}"; do
          p=$d; [ "$d" = prometheus ] && p=metrics
          imports+=("github.com/coredns/coredns/plugin/$p")
        done
        prepare "$dir" warren.local/corednsbuild "	github.com/coredns/coredns $COREDNS_VERSION
" "${imports[@]}"
        mkdir -p "$dir/src/cmd/coredns"
        {
          echo '// Command coredns is CoreDNS with the plugins hack/image-bins.sh lists.'
          echo 'package main'
          echo
          echo 'import ('
          echo '	"github.com/coredns/coredns/core/dnsserver"'
          echo '	"github.com/coredns/coredns/coremain"'
          echo
          for p in "${imports[@]:1}"; do printf '\t_ "%s"\n' "$p"; done
          echo ')'
          echo
          echo 'func init() {'
          printf '\tdnsserver.Directives = []string{'
          printf '"%s", ' "${coredns_directives[@]}" | sed 's/, $//'
          echo '}'
          echo '}'
          echo
          echo 'func main() { coremain.Run() }'
        } > "$dir/src/cmd/coredns/main.go"
        gofmt -w "$dir/src/cmd/coredns/main.go"
        build "$dir" coredns ./cmd/coredns "-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
      fi
      ;;
    istio-echo)
      dir="$CACHE/images/istio-echo-$ISTIO_VERSION"
      prepare "$dir" warren.local/istioecho "	istio.io/istio $ISTIO_VERSION
" istio.io/istio/pkg/test/echo/cmd/server istio.io/istio/pkg/test/echo/cmd/client
      build "$dir" istio-echo-server istio.io/istio/pkg/test/echo/cmd/server
      build "$dir" istio-echo-client istio.io/istio/pkg/test/echo/cmd/client
      ;;
    echo-basic)
      dir="$CACHE/images/echo-basic-$GATEWAY_API_VERSION"
      # The conformance module requires gateway-api v0.0.0 with a replace
      # to ../ that only applies inside its own repository: require the
      # matching release directly.
      prepare "$dir" warren.local/echobasic "	sigs.k8s.io/gateway-api $GATEWAY_API_VERSION
	sigs.k8s.io/gateway-api/conformance $GATEWAY_API_VERSION
" sigs.k8s.io/gateway-api/conformance/echo-basic
      build "$dir" echo-basic sigs.k8s.io/gateway-api/conformance/echo-basic
      ;;
    *) echo "image-bins: unknown component $c (coredns|istio-echo|echo-basic)" >&2; exit 2 ;;
  esac
  results+=("$c $dir/bin")
done
printf '%s\n' "${results[@]}"
