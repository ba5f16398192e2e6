#!/usr/bin/env bash
# Makes, once, the certificates of the production-shaped Temporal in DIR (mode 0700, keys 0600):
#   ca.pem, ca.key          the certificate authority (10 years)
#   server.pem, server.key  the server's (serverAuth and clientAuth: its services present it to each
#                           other too), made out to NAME, localhost and 127.0.0.1
#   client.pem, client.key  the workers', the CLI's and the UI's (clientAuth)
# Run again, it keeps what is valid for 30 more days, signed by the CA and fit for its use, and
# renews the rest. Used by scripts/temporal-postgres.sh (start, certs) for both deployments.
#
#   scripts/lib/temporal-certs.sh DIR NAME
set -euo pipefail
tls=${1:?usage: $0 DIR SERVER_NAME}
server_name=${2:?usage: $0 DIR SERVER_NAME}
[[ "$server_name" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?$ ]] || { echo "$0: a server name is a DNS name (got '$server_name')" >&2; exit 2; }
say() { echo "[temporal-certs] $*" >&2; }
umask 077   # no key is readable by others, not even for the moment before a chmod
mkdir -p "$tls"
chmod 700 "$tls"

new_cert() {   # name, subject CN, extensions
  local name=$1 cn=$2 ext=$3
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/O=Runbooks/CN=$cn" \
    -keyout "$tls/$name.key" -out "$tls/$name.csr" 2>/dev/null
  openssl x509 -req -in "$tls/$name.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 825 -sha256 -extfile <(printf '%s\n' "$ext") -out "$tls/$name.pem" 2>/dev/null
  rm -f "$tls/$name.csr"
  chmod 600 "$tls/$name.key"
}
# Present, signed by our CA, fit for each purpose given, and valid for 30 more days.
cert_ok() {
  local name=$1 purpose; shift
  [[ -f "$tls/$name.pem" && -f "$tls/$name.key" ]] && openssl x509 -in "$tls/$name.pem" -noout -checkend 2592000 >/dev/null 2>&1 || return 1
  for purpose in "$@"; do openssl verify -purpose "$purpose" -CAfile "$tls/ca.pem" "$tls/$name.pem" >/dev/null 2>&1 || return 1; done
}
if ! cert_ok ca; then
  say "generating a certificate authority in $tls"
  rm -f "$tls"/*.pem "$tls"/*.key "$tls"/*.srl
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 -sha256 \
    -subj "/O=Runbooks/CN=Runbooks Temporal CA" -keyout "$tls/ca.key" -out "$tls/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  chmod 600 "$tls/ca.key"
fi
leaf='basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment'
# The server's services also present it to each other as clients (mutual TLS between them too).
server_ok() { cert_ok server sslserver sslclient && openssl x509 -in "$tls/server.pem" -noout -checkhost "$server_name" | grep -q 'does match'; }
server_ok || new_cert server "$server_name" "$leaf
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:$server_name,DNS:localhost,IP:127.0.0.1"
cert_ok client sslclient || new_cert client runbooks-worker "$leaf
extendedKeyUsage=clientAuth"
