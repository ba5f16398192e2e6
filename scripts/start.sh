#!/usr/bin/env bash
# The main job: Temporal dev server + Web UI (:8233), the worker, the approval gateway (:8240).
# With TEMPORAL_ADDRESS set it connects there instead of starting a dev server. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/npm-deps.sh
ensure_npm_deps
if [[ -z "${TEMPORAL_ADDRESS:-}" && -z "${TEMPORAL_CLI_PATH:-}" ]]; then
  TEMPORAL_CLI_PATH=$(scripts/lib/temporal-cli.sh || true)
  export TEMPORAL_CLI_PATH
fi
exec node --import tsx scripts/start.ts
