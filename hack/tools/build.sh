#!/usr/bin/env bash
# Builds the pinned tool binaries (control plane, etcd, kwok, controller-gen)
# into one cache dir named after the pins, building only what is missing, and
# prints that dir as its only stdout line:
#
#   export MASTODON_OPERATOR_BIN_DIR=$(hack/tools/build.sh)
#
# The versions live only in hack/tools/*/go.mod; the cache dir is
# ${XDG_CACHE_HOME:-$HOME/.cache}/mastodon-operator/<pins>/, shared by every
# checkout and CI run on the machine. Needs only Go (modules via the proxy).
set -euo pipefail

tools=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Each tool module builds with its own pins, whatever go.work is around.
export GOWORK=off

log() { echo "build.sh: $*" >&2; }

# pin DIR MODULE prints the version of MODULE pinned in hack/tools/DIR/go.mod.
pin() { go -C "$tools/$1" list -m -f '{{.Version}}' "$2"; }

k8s=$(pin kube k8s.io/kubernetes)
etcd=$(pin etcd go.etcd.io/etcd/server/v3)
kwok=$(pin kwok sigs.k8s.io/kwok)
cg=$(pin controller-gen sigs.k8s.io/controller-tools)

dir=${XDG_CACHE_HOME:-$HOME/.cache}/mastodon-operator/k8s-${k8s}_etcd-${etcd}_kwok-${kwok}_cg-${cg}
mkdir -p "$dir"

# One builder per cache dir at a time: a concurrent run waits here, then finds
# the binaries built and has nothing left to do.
exec 9>"$dir/.lock"
if ! flock -n 9; then
  log "waiting for another build.sh to finish with $dir"
  flock 9
fi

# Binaries are built here and renamed into place, so an interrupted build never
# leaves a partial binary under its final name. Holding the lock, any older
# .tmp.* is the leftover of a killed run.
rm -rf "$dir"/.tmp.*
tmp=$(mktemp -d "$dir/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# build MODULE LDFLAGS NAME=PACKAGE... builds each missing NAME from PACKAGE
# in module hack/tools/MODULE.
build() {
  local module=$1 ldflags=$2 spec name pkg start
  shift 2
  for spec in "$@"; do
    name=${spec%%=*} pkg=${spec#*=}
    [[ -x "$dir/$name" ]] && continue
    log "building $name from $pkg (hack/tools/$module)"
    start=$SECONDS
    go -C "$tools/$module" build -trimpath -ldflags "$ldflags" -o "$tmp/$name" "$pkg"
    mv "$tmp/$name" "$dir/$name"
    log "built $name in $((SECONDS - start))s"
  done
}

# kube binaries report their version from these variables, as in a release build.
IFS=. read -r k8s_major k8s_minor _ <<<"${k8s#v}"
build kube "-s -w -X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=$k8s_major -X k8s.io/component-base/version.gitMinor=$k8s_minor" \
  kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
  kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
  kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
  kubectl=k8s.io/kubernetes/cmd/kubectl
build etcd "-s -w" etcd=go.etcd.io/etcd/server/v3
build kwok "-s -w" kwok=sigs.k8s.io/kwok/cmd/kwok
build controller-gen "-s -w" controller-gen=sigs.k8s.io/controller-tools/cmd/controller-gen

log "all tools in $dir"
echo "$dir"
