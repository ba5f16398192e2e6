#!/bin/sh
# run.sh iris|admin ARGS: runs the simulator's entry point iris.ts or admin.ts with node.
# IRIS_SIM_NODE: the node binary (default: node on PATH). IRIS_SIM_BUILD_DIR: the bundle cache
# (default: $TMPDIR/iris-sim-build or /tmp/iris-sim-build).
set -e
entry=$1; shift
src=$(dirname "$(readlink -f "$0")")
root=$(cd "$src/../../.." && pwd)
node=${IRIS_SIM_NODE:-node}
sum=$(cat "$src"/*.ts | cksum | cut -d' ' -f1)
out="${IRIS_SIM_BUILD_DIR:-${TMPDIR:-/tmp}/iris-sim-build}/$sum"
if [ ! -f "$out/$entry.js" ] && [ -x "$root/node_modules/.bin/esbuild" ]; then
  tmp="$out.tmp.$$"
  if "$root/node_modules/.bin/esbuild" "$src/iris.ts" "$src/admin.ts" "$src/status-server.ts" \
      --bundle --platform=node --target=node20 --outdir="$tmp" --log-level=error >&2; then
    mv -T "$tmp" "$out" 2>/dev/null || rm -rf "$tmp"   # another call may have built it first
  fi
fi
if [ -f "$out/$entry.js" ]; then exec "$node" "$out/$entry.js" "$@"; fi
exec "$node" --import "$root/node_modules/tsx/dist/loader.mjs" "$src/$entry.ts" "$@"
