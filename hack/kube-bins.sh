#!/usr/bin/env bash
# kube-bins.sh builds the Kubernetes control-plane and node binaries Warren's tests
# and local cluster run, from the Go module proxy, into a cache directory.
#
#   hack/kube-bins.sh [component...]      (default: etcd kube-apiserver)
#
# Components: etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
#
# The binaries land in $KUBE_BIN_DIR (default .cache/kube/<version>/bin), which is
# also a valid envtest KUBEBUILDER_ASSETS directory. A throwaway module under
# .cache/kube/<version>/src requires k8s.io/kubernetes and replaces every staging
# module with its published v0.x version; it never touches the project's go.mod.
# Already-built components are skipped, so the script is cheap to call repeatedly.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.36.3}
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"
top=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${WARREN_CACHE:-$top/.cache}
work="$CACHE/kube/$KUBE_VERSION"
KUBE_BIN_DIR=${KUBE_BIN_DIR:-$work/bin}
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0

comps=("$@")
[ ${#comps[@]} -gt 0 ] || comps=(etcd kube-apiserver)

need=()
for c in "${comps[@]}"; do
  case "$c" in
    etcd|kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy) ;;
    *) echo "kube-bins: unknown component $c" >&2; exit 2 ;;
  esac
  [ -x "$KUBE_BIN_DIR/$c" ] || need+=("$c")
done
if [ ${#need[@]} -eq 0 ]; then
  echo "kube-bins: ${comps[*]} cached in $KUBE_BIN_DIR"
  exit 0
fi

mkdir -p "$work/src" "$KUBE_BIN_DIR"
cd "$work/src"
if [ ! -f go.sum ] || [ ! -f .ready ]; then
  echo "kube-bins: preparing module for k8s.io/kubernetes $KUBE_VERSION"
  modfile=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  etcd_version=$(awk '$1=="go.etcd.io/etcd/server/v3"{print $2}' "$modfile")
  {
    echo "module warren.local/kubebuild"
    echo
    echo "go 1.26.0"
    echo
    echo "require ("
    echo "	k8s.io/kubernetes $KUBE_VERSION"
    echo "	go.etcd.io/etcd/server/v3 $etcd_version"
    echo ")"
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$STAGING_VERSION"'#p' "$modfile"
    echo ")"
  } > go.mod
  cat > tools.go <<'GO'
//go:build tools

// Package kubebuild pins the main packages built from this throwaway module.
package kubebuild

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  go mod tidy -e >/dev/null 2>tidy.log || { cat tidy.log >&2; exit 1; }
  touch .ready
fi

minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
for c in "${need[@]}"; do
  pkg="k8s.io/kubernetes/cmd/$c"
  [ "$c" = etcd ] && pkg=go.etcd.io/etcd/server/v3
  echo "kube-bins: building $c ($KUBE_VERSION)"
  start=$(date +%s)
  go build -trimpath -ldflags "$ldflags" -o "$KUBE_BIN_DIR/$c.tmp" "$pkg"
  mv "$KUBE_BIN_DIR/$c.tmp" "$KUBE_BIN_DIR/$c"
  echo "kube-bins: built $c in $(( $(date +%s) - start ))s"
done
