#!/usr/bin/env bash
# build_go_module LABEL MODULE VERSION MIN_GO_MINOR TARGET BUILD_FN: builds a Go program from its
# module once into TARGET (a directory in the cache outside the clone) and prints nothing; the
# callers print what they built. BUILD_FN runs inside a writable copy of the module with $1 = the
# output directory and $2 = the module's commit hash (or empty), and puts the program(s) there.
#
# Why not `go install module/cmd/x@version`: the proxy may refuse the module's version list, and
# some builds need files of the module (schemas, a version file). So: `go mod download` the module,
# copy it out of the read-only module cache, build inside it with the dependency versions its own
# go.mod and go.sum pin. TARGET/.built marks a finished build; two callers at once wait for one
# build (flock); a failed build leaves nothing behind. Needs Go >= 1.MIN_GO_MINOR.
build_go_module() (
  set -euo pipefail
  local label=$1 module=$2 version=$3 min_minor=$4 target=$5 build_fn=$6
  local cache_dir
  cache_dir=$(dirname "$target")
  [[ -f "$target/.built" ]] && return 0

  local v major minor
  v=$(command -v go >/dev/null 2>&1 && go env GOVERSION 2>/dev/null | sed -E 's/^go([0-9]+)\.([0-9]+).*/\1 \2/') || v="0 0"
  read -r major minor <<<"$v"
  if ! (( major > 1 || (major == 1 && minor >= min_minor) )); then
    echo "$label $version is not in $target and there is no Go >= 1.$min_minor to build it." >&2
    return 1
  fi

  mkdir -p "$cache_dir"
  exec 9>"$target.lock"
  flock 9
  [[ -f "$target/.built" ]] && return 0   # another caller built it while we waited

  echo "Building $label $version into $target (once)..." >&2
  local work
  work=$(mktemp -d "$target.build.XXXXXX")
  trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
  local download src_dir commit
  download=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$module@$version")
  src_dir=$(sed -n -E 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p' <<<"$download")
  commit=$(sed -n -E 's/^[[:space:]]*"Hash": "([0-9a-f]{40})",?$/\1/p' <<<"$download")
  if [[ -z "$src_dir" || ! -f "$src_dir/go.mod" ]]; then
    echo "go mod download $module@$version did not give a module directory" >&2
    return 1
  fi
  cp -R "$src_dir" "$work/src"
  chmod -R u+w "$work/src"
  mkdir -p "$work/out"
  (cd "$work/src" && export CGO_ENABLED=0 GOFLAGS=-buildvcs=false && "$build_fn" "$work/out" "$commit")
  chmod -R u+w,go-w "$work/out"
  touch "$work/out/.built"
  rm -rf "$target"
  mv "$work/out" "$target"
)
