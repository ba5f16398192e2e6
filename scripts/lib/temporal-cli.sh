#!/usr/bin/env bash
# Prints the path of a `temporal` CLI, installing it into the cache when it is missing.
# Order: $TEMPORAL_CLI_PATH, `temporal` on PATH, the cache, then `go install` (Go >= 1.25).
# Prints nothing and exits 1 when none can be had: callers then fall back to the SDK's download.
set -euo pipefail

TEMPORAL_CLI_VERSION=v1.5.1
cache_dir="${RUNBOOKS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/runbooks}"
cached="$cache_dir/temporal-cli-$TEMPORAL_CLI_VERSION/temporal"

if [[ -n "${TEMPORAL_CLI_PATH:-}" ]]; then
  if [[ -x "$TEMPORAL_CLI_PATH" ]]; then echo "$TEMPORAL_CLI_PATH"; exit 0; fi
  echo "TEMPORAL_CLI_PATH=$TEMPORAL_CLI_PATH is not an executable file" >&2
  exit 1
fi
if command -v temporal >/dev/null 2>&1; then command -v temporal; exit 0; fi
if [[ -x "$cached" ]]; then echo "$cached"; exit 0; fi

go_ok() {
  command -v go >/dev/null 2>&1 || return 1
  local v
  v=$(go env GOVERSION 2>/dev/null | sed -E 's/^go([0-9]+)\.([0-9]+).*/\1 \2/') || return 1
  read -r major minor <<<"$v"
  (( major > 1 || (major == 1 && minor >= 25) ))
}

if go_ok; then
  echo "Installing the temporal CLI $TEMPORAL_CLI_VERSION with go install into $(dirname "$cached") (a few minutes, once)..." >&2
  mkdir -p "$(dirname "$cached")"
  tmp_bin=$(mktemp -d "$cache_dir/gobin.XXXXXX")
  GOBIN="$tmp_bin" go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION" >&2
  mv -f "$tmp_bin/temporal" "$cached"
  rmdir "$tmp_bin"
  echo "$cached"
  exit 0
fi

echo "No temporal CLI found and no Go >= 1.25 to build one." >&2
exit 1
