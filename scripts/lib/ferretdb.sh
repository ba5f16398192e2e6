#!/usr/bin/env bash
# FerretDB v1.24.0 (the MongoDB wire protocol on SQLite): the databases of the Firely Server
# migration tests. Prints the path of the binary, building it once from the Go module proxy into
# the cache outside the clone (see go-module-build.sh; about a minute, needs Go >= 1.22):
#
#   <cache>/ferretdb-v1.24.0/ferretdb
#
# The cache is $RUNBOOKS_CACHE_DIR (default ~/.cache/runbooks), as for the temporal CLI.
# FerretDB embeds build/version/version.txt, which its own build makes with `git describe` (there
# is no git checkout in the module cache): the build writes it.
set -euo pipefail
source "$(dirname "$0")/go-module-build.sh"

FERRETDB_VERSION=v1.24.0
target="${RUNBOOKS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/runbooks}/ferretdb-$FERRETDB_VERSION"

build_ferretdb() {
  printf '%s\n' "$FERRETDB_VERSION" >build/version/version.txt
  [[ -z "$2" ]] || printf '%s\n' "$2" >build/version/commit.txt
  nice -n 19 go build -trimpath -o "$1/ferretdb" ./cmd/ferretdb >&2
  "$1/ferretdb" --version >/dev/null 2>&1 || { echo "the built ferretdb does not run" >&2; return 1; }
}

build_go_module FerretDB github.com/FerretDB/FerretDB "$FERRETDB_VERSION" 22 "$target" build_ferretdb
echo "$target/ferretdb"
