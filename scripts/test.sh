#!/usr/bin/env bash
# Installs whatever the suite needs (idempotent, cached outside the clone), then runs the
# typecheck and the whole jest suite against real components. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/npm-deps.sh

# Debian packages the tests use: PostgreSQL 15 and OpenSSH server (the lab hosts, each in a network
# namespace of its own: iproute2, util-linux), nginx and HAProxy (with socat), chromium (the browser tests), and
# docker-compose (only to validate docker-compose.temporal.yml; no Docker engine is needed).
missing=()
[[ -x /usr/lib/postgresql/15/bin/postgres ]] || missing+=(postgresql-15)
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
[[ -x /usr/bin/tini ]] || missing+=(tini)   # reaps the lab hosts' orphans, as init does on a real host
[[ -x /usr/sbin/nginx ]] || missing+=(nginx)
[[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)     # the Firely proxy switch, HAProxy profile
[[ -x /usr/bin/socat ]] || missing+=(socat)           # talks to HAProxy's admin socket
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v ip >/dev/null 2>&1 || [[ -x /usr/sbin/ip ]] || missing+=(iproute2)
command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)   # the test SMTP server's certificate
[[ -x /usr/bin/chromium ]] || missing+=(chromium)           # the browser tests (playwright-core drives it; never a browser download)
command -v strace >/dev/null 2>&1 || missing+=(strace)       # sees every exec of a script: no secret on a command line
[[ -x /usr/bin/promtool && -x /usr/bin/prometheus ]] || missing+=(prometheus)   # the alert rules' tests, and a real Prometheus scraping the processes
if (( ${#missing[@]} )); then
  echo "Installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=(); [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo -n)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

ensure_npm_deps
TEMPORAL_CLI_PATH=$(scripts/lib/temporal-cli.sh)
export TEMPORAL_CLI_PATH
echo "Temporal CLI: $TEMPORAL_CLI_PATH" >&2
# The real Temporal server and its SQL tool, for test/temporal-production.test.ts: built once into the cache.
TEMPORAL_SERVER_DIR=$(scripts/lib/temporal-server.sh)
echo "Temporal server: $TEMPORAL_SERVER_DIR" >&2
# FerretDB (the MongoDB wire protocol on SQLite), for the Firely tests: built once into the cache.
FERRETDB_BIN=$(scripts/lib/ferretdb.sh)
echo "FerretDB: $FERRETDB_BIN" >&2

echo "Typecheck..." >&2
npx --no-install tsc -p tsconfig.json

results=$(mktemp -d)/jest.json
status=0
npx --no-install jest --ci --json --outputFile="$results" "$@" || status=$?
node -e '
  const r = require(process.argv[1]);
  const skipped = r.numPendingTests + r.numTodoTests;
  const slowest = r.testResults.map((t) => ({ file: require("node:path").relative(process.cwd(), t.name), s: (t.endTime - t.startTime) / 1000 }))
    .sort((a, b) => b.s - a.s).slice(0, 10);
  console.log("\nthe ten slowest suites:");
  for (const t of slowest) console.log(`  ${t.s.toFixed(1).padStart(7)} s  ${t.file}`);
  console.log(`jest: ${((Date.now() - r.startTime) / 1000).toFixed(0)} s from its start to now`);
  console.log(`\ntests: ${r.numPassedTests} passed, ${r.numFailedTests + skipped} failed`);
  if (r.numTotalTests === 0) { console.error("No test ran."); process.exit(1); }
  if (skipped) { console.error(`${skipped} test(s) skipped or todo: a skipped test is a failing test.`); process.exit(1); }
' "$results" || status=1
exit $status
