#!/usr/bin/env bash
# Serves the demo manifest and, on first run, adds a little demo data through the public API.
set -euo pipefail
cd "$(dirname "$0")/.."
LISTEN=${SILO_LISTEN:-127.0.0.1:8080}
ADMIN=${SILO_ADMIN:-127.0.0.1:8081}
DATA=${SILO_DATA:-.silo}
MANIFEST=${SILO_MANIFEST:-silo.toml}

./target/release/silo run --manifest "$MANIFEST" --listen "$LISTEN" --admin "$ADMIN" --data "$DATA" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' INT TERM

if ! command -v curl >/dev/null 2>&1; then
  echo "silo: curl not found: serving without demo data"
  wait $pid
  exit $?
fi
for _ in $(seq 1 200); do
  curl -fsS "http://$ADMIN/healthz" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { wait $pid; exit $?; }
  sleep 0.1
done

post() { curl -fsS -X POST "http://$LISTEN$1" -H 'content-type: application/json' -d "$2"; echo; }
if [ "$(curl -fsS "http://$LISTEN/users")" = "[]" ]; then
  echo "silo: adding demo data"
  id() { sed -E 's/.*"id":"([^"]+)".*/\1/'; }
  ada=$(post /users '{"email":"ada@example.com","name":"Ada Lovelace"}' | tee /dev/stderr | id)
  alan=$(post /users '{"email":"alan@example.com","name":"Alan Turing"}' | tee /dev/stderr | id)
  # Ada can afford an engine; Alan only cards (his engine order is declined and compensated).
  post /payments/accounts "{\"userId\":\"$ada\",\"balance\":500000}"
  post /payments/accounts "{\"userId\":\"$alan\",\"balance\":5000}"
  post /products '{"name":"Analytical Engine","price":250000,"stock":3}'
  post /products '{"name":"Punched cards (100)","price":1200,"stock":500}'
fi
# The dashboard takes the admin token from the URL fragment, which the browser never sends.
token=${SILO_ADMIN_TOKEN:-$(cat "$DATA/admin.token" 2>/dev/null || true)}
echo "silo: dashboard  http://$ADMIN/#token=$token"
echo "silo: try  curl http://$LISTEN/users   (Ctrl-C stops the host)"
wait $pid
