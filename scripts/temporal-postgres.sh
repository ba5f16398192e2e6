#!/usr/bin/env bash
# A production-shaped Temporal without Docker: the real Temporal server v1.29.1 (frontend,
# history, matching and worker services in one process) on its own PostgreSQL 15 cluster, with
# mutual TLS on the frontend (and between the services), a `runbooks` namespace with a retention
# period and the runbooks' search attributes. The same deployment as docker-compose.temporal.yml.
#
#   scripts/temporal-postgres.sh [start]   build once, set up (idempotent), start; prints the environment
#   scripts/temporal-postgres.sh env       prints the environment of the running server
#   scripts/temporal-postgres.sh stop      stops the server, then PostgreSQL (fast shutdown)
#   scripts/temporal-postgres.sh certs     only makes (or renews) the CA and the certificates, and
#                                          prints their directory: docker-compose.temporal.yml uses them
#
#   eval "$(scripts/temporal-postgres.sh)" && ./scripts/start.sh    # worker + gateway against it
#
# Every step observes first and acts only when needed, so `start` can be run again at any time:
# after a crash of the server or of PostgreSQL it starts what is down and changes nothing else.
#
# Env: RUNBOOKS_STATE_DIR (default .temporal; the state is in <it>/temporal-postgres),
# RUNBOOKS_TEMPORAL_NAMESPACE (runbooks), RUNBOOKS_TEMPORAL_RETENTION (30d), RUNBOOKS_TEMPORAL_PORT
# (the frontend's port; a free one at the first start), PG_BIN (/usr/lib/postgresql/15/bin),
# RUNBOOKS_CACHE_DIR (where the server is built, see scripts/lib/temporal-server.sh).
# Only stdout carries the environment; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

say() { echo "[temporal-postgres] $*" >&2; }
die() { say "$*"; exit 1; }

command=${1:-start}
case "$command" in start|env|stop|certs) ;; *) die "usage: $0 [start|env|stop|certs]" ;; esac

state_root=${RUNBOOKS_STATE_DIR:-$repo/.temporal}
# The state directory ends up in YAML and PostgreSQL settings, written between double or single quotes.
[[ "$state_root" != *[$'\n'\"\'\\]* ]] || die "RUNBOOKS_STATE_DIR must not contain a newline, a quote or a backslash (got '$state_root')"
namespace=${RUNBOOKS_TEMPORAL_NAMESPACE:-runbooks}
[[ "$namespace" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$ ]] || die "RUNBOOKS_TEMPORAL_NAMESPACE must be 2-255 letters, digits, '.', '_' or '-' (got '$namespace')"
retention=${RUNBOOKS_TEMPORAL_RETENTION:-30d}
[[ "$retention" =~ ^([0-9]{1,5})([hd])$ ]] || die "RUNBOOKS_TEMPORAL_RETENTION must be hours or days such as 72h or 30d (got '$retention')"
retention_hours=$(( 10#${BASH_REMATCH[1]} ))
[[ ${BASH_REMATCH[2]} == h ]] || retention_hours=$(( retention_hours * 24 ))
(( retention_hours >= 24 )) || die "RUNBOOKS_TEMPORAL_RETENTION must be at least 1d: a finished runbook's history is its record of what was done"
[[ "${RUNBOOKS_TEMPORAL_PORT:-1}" =~ ^[1-9][0-9]{0,4}$ && ${RUNBOOKS_TEMPORAL_PORT:-1} -le 65535 ]] || die "RUNBOOKS_TEMPORAL_PORT must be a port number (got '$RUNBOOKS_TEMPORAL_PORT')"
pg_bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
server_name=temporal   # the frontend's name in its certificate (TEMPORAL_TLS_SERVER_NAME); also the compose service's
mkdir -p "$state_root"
state=$(cd "$state_root" && pwd)/temporal-postgres

pg_dir=$state/pg         # owned by the cluster's OS user: data/, run/ (the socket), postgresql.log
pg_data=$pg_dir/data
pg_run=$pg_dir/run
tls=$state/tls
pid_file=$state/temporal.pid
log_file=$state/temporal.log
env_file=$state/env
mkdir -p "$state"
# One of us at a time per state directory. Whatever we start (PostgreSQL, the server) gets 8>&-,
# or it would hold the lock for as long as it runs.
exec 8>"$state/.lock"
flock 8

# PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres` user.
if [[ $(id -u) -eq 0 ]]; then pg_user=postgres; else pg_user=$(id -un); fi
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

server_pid() {   # the pid of our running server, if it runs
  local pid
  [[ -f "$pid_file" ]] || return 1
  pid=$(<"$pid_file")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  # A pid file outliving its process may name someone else's process since: check the command.
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "temporal-server --root $state --config" || return 1
  echo "$pid"
}

pg_running() { [[ -f "$pg_data/PG_VERSION" ]] && as_pg "$pg_bin/pg_ctl" -D "$pg_data" status >/dev/null 2>&1; }

stop_all() {
  local pid
  if pid=$(server_pid); then
    say "stopping the Temporal server (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then say "still running after 30 s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$pid_file"
  if pg_running; then
    say "stopping PostgreSQL (fast shutdown)"
    as_pg "$pg_bin/pg_ctl" -D "$pg_data" -w -t 60 stop -m fast >/dev/null
  fi
}

if [[ "$command" == stop ]]; then stop_all; exit 0; fi
if [[ "$command" == env ]]; then
  server_pid >/dev/null || die "no Temporal server of ours runs from $state: run $0 start"
  cat "$env_file"
  exit 0
fi

# --- what it needs -------------------------------------------------------------------------------
missing=()
[[ "$command" == certs || -x "$pg_bin/postgres" ]] || missing+=(postgresql-15)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if (( ${#missing[@]} )); then
  sudo_cmd=(); [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo -n)
  say "installing Debian packages: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p "$state/config" "$state/secrets"
chmod 755 "$state"     # the postgres user must reach $pg_dir
chmod 700 "$state/secrets"

# --- certificates: a CA, the server's certificate (frontend and between its services), a client's ---
scripts/lib/temporal-certs.sh "$tls" "$server_name"
if [[ "$command" == certs ]]; then echo "$tls"; exit 0; fi

# --- the server and its tools (built once into the cache), the CLI, the npm dependencies ----------
source scripts/lib/npm-deps.sh
ensure_npm_deps
server_dir=$(scripts/lib/temporal-server.sh) || die "cannot build the Temporal server (see above)"
cli=$(scripts/lib/temporal-cli.sh) || die "the temporal CLI is needed to create the namespace (see above)"
if [[ $(id -u) -eq 0 ]] && ! runuser -u postgres -- test -x "$state"; then
  die "PostgreSQL runs as the postgres user, which cannot reach $state (a parent directory is closed to it): set RUNBOOKS_STATE_DIR to a directory it can reach, e.g. /var/tmp/runbooks"
fi

# --- ports: chosen once (free loopback ports), kept across restarts so clients keep their address --
ports_file=$state/ports.env
port_names=(PG FRONTEND FRONTEND_MEMBERSHIP HISTORY HISTORY_MEMBERSHIP MATCHING MATCHING_MEMBERSHIP WORKER WORKER_MEMBERSHIP METRICS)
if [[ ! -f "$ports_file" ]]; then
  # Free ports below 32768: the server keeps membership ports in a SMALLINT column, and the kernel's
  # own choice (port 0) comes from the ephemeral range above it. Node holds each port it found
  # until all are found, so they are distinct.
  node -e '
    const net = require("net");
    const names = process.argv.slice(1);
    const held = [];
    const tryPort = (port) => new Promise((ok) => {
      const s = net.createServer();
      s.once("error", () => ok(undefined));
      s.listen(port, "127.0.0.1", () => ok(s));
    });
    (async () => {
      for (let tries = 0; held.length < names.length; tries++) {
        if (tries > 5000) throw new Error("no free loopback ports between 20000 and 32767");
        const s = await tryPort(20000 + Math.floor(Math.random() * 12768));
        if (s) held.push(s);
      }
      const ports = held.map((s) => s.address().port);
      if (process.env.RUNBOOKS_TEMPORAL_PORT) ports[1] = Number(process.env.RUNBOOKS_TEMPORAL_PORT);
      process.stdout.write(names.map((n, i) => `${n}_PORT=${ports[i]}\n`).join(""));
      held.forEach((s) => s.close());
    })();' "${port_names[@]}" >"$ports_file.tmp"
  mv "$ports_file.tmp" "$ports_file"
fi
for name in "${port_names[@]}"; do
  value=$(sed -n "s/^${name}_PORT=\([0-9]\{1,5\}\)$/\1/p" "$ports_file")
  [[ -n "$value" ]] || die "$ports_file lacks ${name}_PORT: remove the file to choose new ports"
  printf -v "${name}_PORT" '%s' "$value"
done
if [[ -n "${RUNBOOKS_TEMPORAL_PORT:-}" && "$RUNBOOKS_TEMPORAL_PORT" != "$FRONTEND_PORT" ]]; then
  die "this server was set up on port $FRONTEND_PORT; RUNBOOKS_TEMPORAL_PORT=$RUNBOOKS_TEMPORAL_PORT would move it (remove $ports_file to choose again)"
fi
address=127.0.0.1:$FRONTEND_PORT

# --- PostgreSQL 15 ---------------------------------------------------------------------------------
mkdir -p "$pg_dir"
[[ $(id -u) -eq 0 ]] && chown "$pg_user:" "$pg_dir"
chmod 700 "$pg_dir"
if [[ ! -f "$pg_data/PG_VERSION" ]]; then
  say "initialising a PostgreSQL cluster in $pg_data (as $pg_user)"
  as_pg mkdir -p "$pg_run"
  as_pg "$pg_bin/initdb" -D "$pg_data" -U "$pg_user" --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
fi
as_pg mkdir -p "$pg_run"
as_pg tee "$pg_data/runbooks.conf" >/dev/null <<EOF
# Written by scripts/temporal-postgres.sh at every start.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$pg_run'
max_connections = 100
password_encryption = 'scram-sha-256'
EOF
grep -q "^include_if_exists = 'runbooks.conf'" "$pg_data/postgresql.conf" ||
  echo "include_if_exists = 'runbooks.conf'" | as_pg tee -a "$pg_data/postgresql.conf" >/dev/null
as_pg tee "$pg_data/pg_hba.conf" >/dev/null <<EOF
# Written by scripts/temporal-postgres.sh: the cluster's owner over the socket, Temporal over loopback.
local all $pg_user peer
host temporal,temporal_visibility temporal 127.0.0.1/32 scram-sha-256
EOF
if ! pg_running; then
  say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  as_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_dir/postgresql.log" -w -t 60 start >/dev/null 8>&- ||
    die "PostgreSQL did not start: see $pg_dir/postgresql.log"
else
  as_pg "$pg_bin/pg_ctl" -D "$pg_data" reload >/dev/null
fi
psql_admin() { as_pg "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$pg_run" -p "$PG_PORT" -U "$pg_user" -d postgres "$@"; }

# The server's database password: made once, kept 0600, given to the tools by environment only.
password_file=$state/secrets/temporal-db-password
[[ -s "$password_file" ]] || (umask 077 && openssl rand -hex 24 >"$password_file")
db_password=$(<"$password_file")
# psql reads it from its environment (\getenv), never from its command line, which every user sees in ps.
RUNBOOKS_TEMPORAL_DB_PASSWORD=$db_password psql_admin <<'SQL'
\getenv pw RUNBOOKS_TEMPORAL_DB_PASSWORD
SELECT 'CREATE ROLE temporal LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'temporal') \gexec
ALTER ROLE temporal LOGIN PASSWORD :'pw';
SELECT 'CREATE DATABASE temporal OWNER temporal' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'temporal') \gexec
SELECT 'CREATE DATABASE temporal_visibility OWNER temporal' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'temporal_visibility') \gexec
SQL

# Both schemas: the version table at 0.0 (skipped when further), then every versioned step not yet applied.
for db in temporal:temporal visibility:temporal_visibility; do
  schema=${db%%:*} database=${db#*:}
  sql_tool=("$server_dir/temporal-sql-tool" --plugin postgres12 --ep 127.0.0.1 -p "$PG_PORT" -u temporal --db "$database")
  SQL_PASSWORD=$db_password "${sql_tool[@]}" setup-schema -v 0.0 >/dev/null 2>"$state/sql-tool.log" ||
    { cat "$state/sql-tool.log" >&2; die "setting up the $database schema failed"; }
  SQL_PASSWORD=$db_password "${sql_tool[@]}" update-schema -d "$server_dir/schema/postgresql/v12/$schema/versioned" >/dev/null 2>"$state/sql-tool.log" ||
    { cat "$state/sql-tool.log" >&2; die "updating the $database schema failed"; }
done
say "schemas temporal and temporal_visibility are up to date"

# --- the server's configuration: the module's config/development-postgres12.yaml with our ports, ---
# --- password and mutual TLS (as the server's docker/config_template.yaml does with TLS on: the ---
# --- frontend, and between its services, whose certificate also serves its system worker), no ---
# --- archival; the HTTP API stays off (clients use gRPC). --------------------------------------------
config=$state/config/production.yaml
(umask 077 && cat >"$config.tmp" <<EOF
# Written by scripts/temporal-postgres.sh from the server's config/development-postgres12.yaml.
log:
  stdout: true
  level: warn
persistence:
  defaultStore: postgres-default
  visibilityStore: postgres-visibility
  numHistoryShards: 4
  datastores:
    postgres-default:
      sql:
        pluginName: "postgres12"
        databaseName: "temporal"
        connectAddr: "127.0.0.1:$PG_PORT"
        connectProtocol: "tcp"
        user: "temporal"
        password: "$db_password"
        maxConns: 20
        maxIdleConns: 20
        maxConnLifetime: "1h"
    postgres-visibility:
      sql:
        pluginName: "postgres12"
        databaseName: "temporal_visibility"
        connectAddr: "127.0.0.1:$PG_PORT"
        connectProtocol: "tcp"
        user: "temporal"
        password: "$db_password"
        maxConns: 2
        maxIdleConns: 2
        maxConnLifetime: "1h"
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: "127.0.0.1"
  pprof:
    port: 0
  metrics:
    prometheus:
      framework: "tally"
      timerType: "histogram"
      listenAddress: "127.0.0.1:$METRICS_PORT"
  tls:
    # The same mutual TLS between the services and for clients (a YAML anchor, not a copy).
    internode: &mtls
      server:
        certFile: "$tls/server.pem"
        keyFile: "$tls/server.key"
        requireClientAuth: true
        clientCaFiles: ["$tls/ca.pem"]
      client:
        serverName: "$server_name"
        rootCaFiles: ["$tls/ca.pem"]
    frontend: *mtls
services:
  frontend:
    rpc: { grpcPort: $FRONTEND_PORT, membershipPort: $FRONTEND_MEMBERSHIP_PORT, bindOnIP: "127.0.0.1" }
  history:
    rpc: { grpcPort: $HISTORY_PORT, membershipPort: $HISTORY_MEMBERSHIP_PORT, bindOnIP: "127.0.0.1" }
  matching:
    rpc: { grpcPort: $MATCHING_PORT, membershipPort: $MATCHING_MEMBERSHIP_PORT, bindOnIP: "127.0.0.1" }
  worker:
    rpc: { grpcPort: $WORKER_PORT, membershipPort: $WORKER_MEMBERSHIP_PORT, bindOnIP: "127.0.0.1" }
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: "active"
  currentClusterName: "active"
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: "frontend"
      rpcAddress: "$address"
dcRedirectionPolicy:
  policy: "noop"
dynamicConfigClient:
  filepath: "$state/config/dynamicconfig.yaml"
  pollInterval: "10s"
EOF
) && mv "$config.tmp" "$config"
cat >"$state/config/dynamicconfig.yaml" <<'EOF'
# Written by scripts/temporal-postgres.sh: the server's defaults, changed here at run time (polled every 10 s).
# Worker Versioning (Worker Deployments): the runbooks are pinned to the build they started on. On by
# default in server 1.29.1; said here so that a server whose default differs keeps it on.
system.enableDeploymentVersions:
  - value: true
frontend.workerVersioningWorkflowAPIs:
  - value: true
EOF

# --- the server ------------------------------------------------------------------------------------
cli_env=(TEMPORAL_ADDRESS="$address" TEMPORAL_NAMESPACE="$namespace" TEMPORAL_TLS_CLIENT_CERT_PATH="$tls/client.pem"
  TEMPORAL_TLS_CLIENT_KEY_PATH="$tls/client.key" TEMPORAL_TLS_SERVER_CA_CERT_PATH="$tls/ca.pem" TEMPORAL_TLS_SERVER_NAME="$server_name")
temporal_cli() { env "${cli_env[@]}" "$cli" --disable-config-file --command-timeout 10s "$@"; }

if pid=$(server_pid); then
  say "the Temporal server runs (pid $pid)"
else
  say "starting the Temporal server on $address (log: $log_file)"
  # Its own session, so a Ctrl-C in the shell that started it does not reach it.
  setsid "$server_dir/temporal-server" --root "$state" --config config --env production --allow-no-auth start \
    >>"$log_file" 2>&1 </dev/null 8>&- &
  pid=$!
  echo "$pid" >"$pid_file"
fi
deadline=$(( SECONDS + 90 ))
until temporal_cli operator cluster health 2>/dev/null | grep -q SERVING; do
  kill -0 "$pid" 2>/dev/null || { tail -n 30 "$log_file" >&2; die "the Temporal server exited (log: $log_file)"; }
  (( SECONDS < deadline )) || { tail -n 30 "$log_file" >&2; die "the Temporal server did not answer within 90 s (log: $log_file)"; }
  sleep 0.25
done

# --- the namespace and the search attributes ------------------------------------------------------
if temporal_cli operator namespace describe --namespace "$namespace" >/dev/null 2>&1; then
  temporal_cli operator namespace update --namespace "$namespace" --retention "${retention_hours}h" >/dev/null
else
  say "creating the namespace $namespace (retention ${retention_hours}h)"
  temporal_cli operator namespace create --namespace "$namespace" --retention "${retention_hours}h" \
    --description "Runbooks: durable approval-gated runbooks" >/dev/null
fi
# The names and types come from the runbooks' own definition (contracts/search-attributes.ts).
mapfile -t wanted < <(node --import tsx -e '
  const { runbookSearchAttributes } = require("./contracts/search-attributes");
  const types = { KEYWORD: "Keyword", TEXT: "Text", INT: "Int", DOUBLE: "Double", BOOL: "Bool", DATETIME: "Datetime", KEYWORD_LIST: "KeywordList" };
  for (const k of runbookSearchAttributes) console.log(`${k.name} ${types[k.type]}`);')
(( ${#wanted[@]} )) || die "could not read the runbooks' search attributes from contracts/search-attributes.ts"
# A new namespace reaches the frontend's cache within seconds: until then the listing fails.
deadline=$(( SECONDS + 60 ))
while :; do
  args=()
  if existing=$(temporal_cli operator search-attribute list --namespace "$namespace" -o json 2>&1); then
    for line in "${wanted[@]}"; do
      read -r name type <<<"$line"
      grep -q "\"$name\"" <<<"$existing" || args+=(--name "$name" --type "$type")
    done
    (( ${#args[@]} )) || break
    say "registering search attributes on $namespace: ${args[*]}"
    temporal_cli operator search-attribute create --namespace "$namespace" "${args[@]}" >/dev/null 2>&1 || true
  fi
  (( SECONDS < deadline )) || die "the search attributes of $namespace are not all there after 60 s (${args[*]:-$existing})"
  sleep 0.5
done

(umask 077 && for kv in "${cli_env[@]}"; do printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"; done >"$env_file")
say "ready: $address, namespace $namespace, mutual TLS (client certificate $tls/client.pem); PostgreSQL 127.0.0.1:$PG_PORT; metrics http://127.0.0.1:$METRICS_PORT/metrics"
say "stop with: $0 stop"
cat "$env_file"
