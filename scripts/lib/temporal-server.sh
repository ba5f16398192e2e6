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
# build takes a few minutes and needs Go >= 1.25 (see go-module-build.sh); later calls print the
# directory at once. Exits 1 with a message when it cannot build.
set -euo pipefail
source "$(dirname "$0")/go-module-build.sh"

TEMPORAL_SERVER_VERSION=v1.29.1
target="${RUNBOOKS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/runbooks}/temporal-server-$TEMPORAL_SERVER_VERSION"

# The schema tool needs the module's schema/ beside it, and the config starts from its config/.
build_temporal_server() {
  nice -n 19 go build -trimpath -o "$1/temporal-server" ./cmd/server >&2
  nice -n 19 go build -trimpath -o "$1/temporal-sql-tool" ./cmd/tools/sql >&2
  cp -R config "$1/config"
  cp -R schema "$1/schema"
  "$1/temporal-server" --version >/dev/null 2>&1 || { echo "the built temporal-server does not run" >&2; return 1; }
}

build_go_module "the Temporal server" go.temporal.io/server "$TEMPORAL_SERVER_VERSION" 25 "$target" build_temporal_server
echo "$target"
