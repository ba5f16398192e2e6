#!/usr/bin/env bash
# Prints the directory of a built Temporal server (the multi-service server on SQL, not the dev
# server), building it once from the Go module proxy into the cache outside the clone:
#
#   <cache>/temporal-server-v1.29.1/temporal-server      the server (frontend, history, matching, worker)
#   <cache>/temporal-server-v1.29.1/temporal-sql-tool    its schema tool
#   <cache>/temporal-server-v1.29.1/config/              the module's configuration templates
#   <cache>/temporal-server-v1.29.1/schema/              the module's SQL schemas (postgresql/v12/...)
#
# The cache is $RUNBOOKS_CACHE_DIR (default ~/.cache/runbooks), as for the temporal CLI. The first
# build takes a few minutes and needs Go >= 1.25; later calls print the directory at once. Two
# callers at the same time wait for one build (flock). Exits 1 with a message when it cannot build.
set -euo pipefail

TEMPORAL_SERVER_VERSION=v1.29.1
module=go.temporal.io/server
cache_dir="${RUNBOOKS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/runbooks}"
target="$cache_dir/temporal-server-$TEMPORAL_SERVER_VERSION"
done_marker="$target/.built"

ready() { [[ -f "$done_marker" && -x "$target/temporal-server" && -x "$target/temporal-sql-tool" ]]; }
if ready; then echo "$target"; exit 0; fi

go_ok() {
  command -v go >/dev/null 2>&1 || return 1
  local v major minor
  v=$(go env GOVERSION 2>/dev/null | sed -E 's/^go([0-9]+)\.([0-9]+).*/\1 \2/') || return 1
  read -r major minor <<<"$v"
  (( major > 1 || (major == 1 && minor >= 25) ))
}
if ! go_ok; then
  echo "The Temporal server $TEMPORAL_SERVER_VERSION is not in $target and there is no Go >= 1.25 to build it." >&2
  exit 1
fi

mkdir -p "$cache_dir"
exec 9>"$cache_dir/temporal-server-$TEMPORAL_SERVER_VERSION.lock"
flock 9
if ready; then echo "$target"; exit 0; fi   # another caller built it while we waited

echo "Building the Temporal server $TEMPORAL_SERVER_VERSION into $target (a few minutes, once)..." >&2
work=$(mktemp -d "$cache_dir/temporal-server-build.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# The schema tool needs the module's schema/ beside it, and the config starts from its config/: so
# download the module, copy it out of the read-only module cache and build inside it, with the
# dependency versions its own go.mod and go.sum pin (the proxy may also refuse `go install ...@v`).
src_dir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$module@$TEMPORAL_SERVER_VERSION" |
  sed -n -E 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')
if [[ -z "$src_dir" || ! -f "$src_dir/go.mod" ]]; then
  echo "go mod download $module@$TEMPORAL_SERVER_VERSION did not give a module directory" >&2
  exit 1
fi
cp -R "$src_dir" "$work/src"
chmod -R u+w "$work/src"
out="$work/out"
mkdir -p "$out"
(
  cd "$work/src"
  export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
  nice -n 19 go build -trimpath -o "$out/temporal-server" ./cmd/server >&2
  nice -n 19 go build -trimpath -o "$out/temporal-sql-tool" ./cmd/tools/sql >&2
)
cp -R "$work/src/config" "$out/config"
cp -R "$work/src/schema" "$out/schema"
chmod -R u+w,go-w "$out"
"$out/temporal-server" --version >/dev/null 2>&1 || { echo "the built temporal-server does not run" >&2; exit 1; }
touch "$out/.built"

rm -rf "$target"
mv "$out" "$target"
echo "$target"
