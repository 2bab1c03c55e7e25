#!/usr/bin/env bash
# Services in other languages against Rust (issue 20): component size, compile time cold
# (empty code cache) and cached (second start), and the per-request cost of the Python
# `recommendations` and JavaScript `notifications` next to the Rust `users` doing the same
# kind of work (one keyed read from its own store, JSON out), with wrk, 3 interleaved runs.
# Needs `make build` and wrk. Ports 19080/19081; everything under a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SILO=$ROOT/target/release/silo
OUT=$ROOT/components/target/wasm32-wasip2/release
T=$(mktemp -d); trap 'kill $(cat "$T/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$T"' EXIT
sed "s#\"components/target/#\"$ROOT/components/target/#" silo.toml > "$T/silo.toml"
mkdir -p "$T/cache"
start() {
  "$SILO" run --manifest "$T/silo.toml" --data "$T/data" --cache "$T/cache" \
    --listen 127.0.0.1:19080 --admin 127.0.0.1:19081 > "$T/out.$1" 2> "$T/err.$1" &
  echo $! > "$T/pid"
  for _ in $(seq 1 1200); do grep -q "silo: serving" "$T/out.$1" && return; sleep 0.5; done
  echo "silo did not start" >&2; exit 1
}
stop() { kill "$(cat "$T/pid")"; wait "$(cat "$T/pid")" 2>/dev/null || true; }
echo "| component | size |"; echo "| --- | --- |"
for c in users recommendations notifications; do echo "| $c | $(stat -c %s "$OUT/$c.wasm") bytes |"; done
start cold
echo "cold compile (ms, components of 1 s or more):"
grep -o 'service compiled service="[a-z]*".*took_ms=[0-9]*' "$T/err.cold" || true
stop
start cached
echo "cached start (ms, components of 1 s or more):"
grep -o 'service compiled service="[a-z]*".*took_ms=[0-9]*' "$T/err.cached" || echo "(none over 1 s)"
user=$(curl -s -XPOST 127.0.0.1:19080/users -d '{"email":"bench@example.com","name":"Bench"}' \
  | sed 's/.*"id":"\([^"]*\)".*/\1/')
for run in 1 2 3; do
  for path in "/users/$user" "/recommendations/prd_x" "/notifications?userId=$user"; do
    echo "run $run $path: $(wrk -t1 -c4 -d5s "http://127.0.0.1:19080$path" \
      | grep -E 'Requests/sec|Latency' | tr -s ' ' | tr '\n' ' ')"
  done
done
stop
