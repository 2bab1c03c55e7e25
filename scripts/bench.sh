#!/usr/bin/env bash
# bench.sh: `make bench` — requests per second and p50/p99 latency of silo against native
# baselines and `wasmtime serve`, on loopback, at a few concurrency levels (see BENCHMARKS.md).
#
# Then events (bench/src/bin/events-bench.rs): outbox → router → inbox throughput and delivery lag
# through the real host, against the same SQLite writes done natively; and sagas
# (bench/src/bin/saga-bench.rs): the demo's order saga through the real host (sagas per second,
# saga and POST /orders latency), against the same SQLite writes done natively.
# And SQL backends (bench/src/bin/backend-bench.rs): the users component's insert and point
# lookup through the real host with its store on SQLite, PostgreSQL and MariaDB, against the
# same statements run natively with the same driver (rusqlite, tokio-postgres, mysql_async).
#
# Prints Markdown on stdout (progress goes to stderr) and writes it to target/bench/latest.md
# (target/bench/quick.md with BENCH_QUICK=1);
# every wrk output and server log lands in target/bench/logs/.
#
# Settings (environment):
#   BENCH_QUICK=1      a check of a few seconds, not a measurement: the lookup (its comparison
#                      of silo's and the native answers included) and hello, one 1 s run at one
#                      connection each, 50 products, no wasmtime serve, events, sagas, SQL
#                      backends or in-process section (each setting below still wins)
#   BENCH_SECONDS      length of one measured run, seconds            (10)
#   BENCH_RUNS         runs per point; the median by rps is reported  (3)
#   BENCH_CONCURRENCY  connection counts                              ("1 16 64")
#   BENCH_WARMUP       warm-up per server before its scenario, seconds (2; 0 = none)
#   BENCH_PRODUCTS     products seeded for the lookup                 (1000)
#   BENCH_PORT_BASE    first loopback port tried                      (18080)
#   BENCH_SKIP_WASMTIME=1  leave out `wasmtime serve` (and do not install it)
#   BENCH_LOOKUP_SQL   the native baseline's query, if the products schema ever differs
#   BENCH_SKIP_EVENTS=1  leave out the events benchmark
# Read by events-bench itself (see `target/release/events-bench --help`):
#   BENCH_EVENTS         events at the batched throughput point        (20000)
#   BENCH_EVENT_BATCH    events per publish request there              (50)
#   BENCH_EVENTS_SINGLE  events at the one-per-request point           (5000)
#   BENCH_EVENT_CLIENTS  concurrent publishing clients                 (4)
#   BENCH_EVENT_RATES    fixed publish rates of the lag runs, per s    ("500,2000")
#   BENCH_EVENT_SECONDS  length of one fixed-rate run, seconds         (10)
#   BENCH_EVENT_TIMEOUT  longest wait for a drain or a host start, s   (120)
#   BENCH_SKIP_SAGAS=1   leave out the saga benchmark
# Read by saga-bench itself (see `target/release/saga-bench --help`):
#   BENCH_SAGAS          orders (sagas) per throughput point and native run (3000)
#   BENCH_SAGA_CLIENTS   concurrent clients placing orders there         (16)
#   BENCH_SAGA_USERS     users seeded, each with a payments account      (100)
#   BENCH_SAGA_PRODUCTS  products seeded                                 (4)
#   BENCH_SAGA_SCENARIOS throughput scenarios: approved, stock (half refused at reserve),
#                        funds (half refused at charge, stock released)  ("approved,stock,funds")
#   BENCH_SAGA_RATE      fixed order rate(s) of the latency runs, per s  ("100"; none)
#   BENCH_SAGA_SECONDS   length of one fixed-rate run, seconds           (10)
#   BENCH_SAGA_TIMEOUT   longest wait for the sagas to end or a host start, s (180)
#   BENCH_SKIP_BACKENDS=1  leave out the SQL backends benchmark
#   BENCH_SKIP_INSTANTIATE=1  leave out the in-process section (cargo bench)
# Read by backend-bench itself (see `target/release/backend-bench --help`):
#   BENCH_BACKENDS        backends measured: sqlite, postgres, mysql  ("sqlite,postgres,mysql")
#   BENCH_POSTGRES_URL    PostgreSQL admin connection   (postgres://postgres@127.0.0.1:5432/postgres)
#   BENCH_MYSQL_URL       MariaDB admin connection      (mysql://root@127.0.0.1:3306/)
#   BENCH_BACKEND_PREFIX  its databases, roles, users (every PREFIX_* is dropped)
#                         (here: "silobench" and random hex, one per run, so two checkouts'
#                         benches on one server never drop each other's)
#   BENCH_BACKEND_CLIENTS concurrent clients                          (16)
#   BENCH_BACKEND_SECONDS length of one measured run, seconds         (4)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export BENCH_BACKEND_PREFIX=${BENCH_BACKEND_PREFIX:-silobench$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')}
export PATH="$HOME/.cargo/bin:$PATH"

QUICK=${BENCH_QUICK:-0}
if [[ $QUICK == 1 ]]; then
  SECS=${BENCH_SECONDS:-1}
  RUNS=${BENCH_RUNS:-1}
  LEVELS=${BENCH_CONCURRENCY:-1}
  WARMUP=${BENCH_WARMUP:-0}
  PRODUCTS=${BENCH_PRODUCTS:-50}
  SKIP_WASMTIME=${BENCH_SKIP_WASMTIME:-1}
  SKIP_EVENTS=${BENCH_SKIP_EVENTS:-1}
  SKIP_SAGAS=${BENCH_SKIP_SAGAS:-1}
  SKIP_BACKENDS=${BENCH_SKIP_BACKENDS:-1}
  SKIP_INSTANTIATE=${BENCH_SKIP_INSTANTIATE:-1}
else
  SECS=${BENCH_SECONDS:-10}
  RUNS=${BENCH_RUNS:-3}
  LEVELS=${BENCH_CONCURRENCY:-1 16 64}
  WARMUP=${BENCH_WARMUP:-2}
  PRODUCTS=${BENCH_PRODUCTS:-1000}
  SKIP_WASMTIME=${BENCH_SKIP_WASMTIME:-0}
  SKIP_EVENTS=${BENCH_SKIP_EVENTS:-0}
  SKIP_SAGAS=${BENCH_SKIP_SAGAS:-0}
  SKIP_BACKENDS=${BENCH_SKIP_BACKENDS:-0}
  SKIP_INSTANTIATE=${BENCH_SKIP_INSTANTIATE:-0}
fi
NEXT_PORT=${BENCH_PORT_BASE:-18080}
WASMTIME_VERSION=48.0.8

TOOLS=$ROOT/.bench-tools
WASMTIME=$TOOLS/bin/wasmtime
SILO=$ROOT/target/release/silo
BIN=$ROOT/target/release
COMPONENTS=$ROOT/components/target/wasm32-wasip2/release
LUA=$ROOT/bench/wrk/bench.lua
OUT_DIR=$ROOT/target/bench
LOGS=$OUT_DIR/logs
# A quick run checks, it does not measure: it never replaces the last real report.
REPORT_NAME=latest.md
[[ $QUICK == 1 ]] && REPORT_NAME=quick.md
REPORT=$OUT_DIR/$REPORT_NAME
PARTIAL=$OUT_DIR/$REPORT_NAME.partial
# The command as run: the BENCH_* settings given, then the script (`make bench` runs it bare).
COMMAND=$(env | { grep '^BENCH_' || true; } | sort | sed -E 's/^([A-Z_]+)=(.*)$/\1="\2"/' | tr '\n' ' ')./scripts/bench.sh

WORK=$(mktemp -d "${TMPDIR:-/tmp}/silo-bench.XXXXXX")
PIDS=()

# ---------------------------------------------------------------- helpers

say() { printf 'bench: %s\n' "$*" >&2; }
fail() {
  say "FAILED: $*"
  exit 1
}
# One line of the report: to stdout and to the report file.
emit() { printf '%s\n' "$*" | tee -a "$PARTIAL"; }

# True while PID runs (a zombie — exited, not yet reaped — counts as gone).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# stop PID [expect-exit-0]: SIGTERM, up to 30 s, then SIGKILL.
stop() {
  local pid=$1 strict=${2:-} status=0 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    [[ -n $strict ]] && fail "process $pid did not stop within 30 s of SIGTERM"
  fi
  wait "$pid" 2>/dev/null || status=$?
  forget_pid "$pid"
  if [[ -n $strict && $status -ne 0 ]]; then
    fail "process $pid exited with status $status after SIGTERM (expected 0)"
  fi
  return 0
}

cleanup() {
  local pid i
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 50; i++)); do
    local any=0
    for pid in "${PIDS[@]}"; do alive "$pid" && any=1; done
    ((any)) || break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# pick_port VAR: the next loopback port nothing listens on.
pick_port() {
  while ((NEXT_PORT < 65000)); do
    local p=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  fail "no free loopback port"
}

# start LOG CMD...: runs CMD in the background, output to LOG; its pid in STARTED.
start() {
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}

# wait_line PID LOG PATTERN SECONDS: until LOG has a line matching PATTERN.
wait_line() {
  local pid=$1 log=$2 pattern=$3 i
  for ((i = 0; i < $4 * 10; i++)); do
    grep -qs -- "$pattern" "$log" && return 0
    alive "$pid" || { tail -n 20 "$log" >&2; fail "process exited before printing '$pattern' (log: $log)"; }
    sleep 0.1
  done
  tail -n 20 "$log" >&2
  fail "no '$pattern' within $4 s (log: $log)"
}

# wait_http PID LOG URL SECONDS: until URL answers 2xx.
wait_http() {
  local pid=$1 log=$2 url=$3 i
  for ((i = 0; i < $4 * 5; i++)); do
    curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
    alive "$pid" || { tail -n 20 "$log" >&2; fail "process exited before $url answered (log: $log)"; }
    sleep 0.2
  done
  tail -n 20 "$log" >&2
  fail "$url did not answer 2xx within $4 s (log: $log)"
}

# start_silo NAME MANIFEST DATA: silo on fresh ports; sets SILO_PID, SILO_URL, ADMIN_URL.
start_silo() {
  local name=$1 manifest=$2 data=$3 port admin
  pick_port port
  pick_port admin
  start "$LOGS/$name.log" "$SILO" run --manifest "$manifest" --listen "127.0.0.1:$port" \
    --admin "127.0.0.1:$admin" --data "$data"
  SILO_PID=$STARTED
  SILO_URL=http://127.0.0.1:$port
  ADMIN_URL=http://127.0.0.1:$admin
  wait_line "$SILO_PID" "$LOGS/$name.log" "silo: serving http://" 120
  wait_http "$SILO_PID" "$LOGS/$name.log" "$ADMIN_URL/healthz" 60
}

# start_native NAME CMD...: a bench baseline on a fresh port; sets NATIVE_PID, NATIVE_URL.
start_native() {
  local name=$1 port
  shift
  pick_port port
  start "$LOGS/$name.log" "$@" --listen "127.0.0.1:$port"
  NATIVE_PID=$STARTED
  NATIVE_URL=http://127.0.0.1:$port
  wait_line "$NATIVE_PID" "$LOGS/$name.log" "listening on" 30
}

# us_to_human MICROSECONDS
us_to_human() {
  awk -v us="$1" 'BEGIN { if (us < 1000) printf "%d µs", us; else if (us < 1000000) printf "%.2f ms", us / 1000; else printf "%.2f s", us / 1000000 }'
}

# ratio A B: A/B to two decimals ("–" when B is 0 or missing).
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else printf "–" }'
}

# wrk_run TAG URL CONNECTIONS SECONDS [IDS]: one wrk run; appends "rps p50_us p99_us errors non2xx"
# to $WORK/TAG-CONNECTIONS.runs.
wrk_run() {
  local tag=$1 url=$2 c=$3 d=$4 ids=${5:-} out line
  local t=$((c < 2 ? c : 2))
  out=$(BENCH_IDS=$ids timeout $((d + 60)) wrk -t"$t" -c"$c" -d"${d}s" --timeout 10s --latency -s "$LUA" "$url") ||
    fail "wrk against $url (c=$c) failed: $out"
  printf '### %s c=%s %s\n%s\n\n' "$tag" "$c" "$(date -u +%T)" "$out" >>"$LOGS/wrk.log"
  line=$(grep '^BENCH_RESULT' <<<"$out") || fail "no BENCH_RESULT line from wrk against $url"
  awk '{
      for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      rps = (v["duration_us"] > 0) ? v["requests"] * 1000000 / v["duration_us"] : 0
      printf "%.0f %d %d %d %d\n", rps, v["p50_us"], v["p99_us"], v["errors"], v["non2xx"]
    }' <<<"$line" >>"$WORK/$tag-$c.runs"
}

# median TAG C: the run with the median rps, "rps p50_us p99_us errors non2xx".
median() {
  local n
  n=$(wc -l <"$WORK/$1-$2.runs")
  sort -n -k1,1 "$WORK/$1-$2.runs" | sed -n "$(((n + 1) / 2))p"
}

# measure SCENARIO "TAG URL [IDS]"...: warm-up, then for each level RUNS rounds over all targets
# (interleaved, so drift hits every target alike).
measure() {
  local scenario=$1 target c r
  shift
  if ((WARMUP > 0)); then
    for target in "$@"; do
      read -r tag url ids <<<"$target"
      say "$scenario: warming up $tag (${WARMUP}s)"
      wrk_run "warmup-$tag" "$url" 16 "$WARMUP" "$ids"
    done
  fi
  for c in $LEVELS; do
    for ((r = 1; r <= RUNS; r++)); do
      for target in "$@"; do
        read -r tag url ids <<<"$target"
        say "$scenario: $tag, $c connections, run $r/$RUNS (${SECS}s)"
        wrk_run "$tag" "$url" "$c" "$SECS" "$ids"
      done
    done
  done
}

# field TAG C INDEX (1 rps, 2 p50, 3 p99, 4 errors, 5 non2xx)
field() { median "$1" "$2" | awk -v i="$3" '{ print $i }'; }
lat() { printf '%s / %s' "$(us_to_human "$(field "$1" "$2" 2)")" "$(us_to_human "$(field "$1" "$2" 3)")"; }
# Notes on failed requests, for the line under a table.
errors_note() {
  local tag c e s
  for tag in "$@"; do
    for c in $LEVELS; do
      e=$(field "$tag" "$c" 4)
      s=$(field "$tag" "$c" 5)
      if ((e > 0 || s > 0)); then
        emit "- **$tag at c=$c: $e socket errors/timeouts, $s non-2xx responses** (see target/bench/logs/wrk.log)"
      fi
    done
  done
}

# goal LABEL RATIO TARGET
goal() {
  local verdict
  verdict=$(awk -v r="$2" -v t="$3" 'BEGIN { if (r == "–") print "not measured"; else if (r + 0 >= t + 0) print "met"; else print "not met" }')
  emit "- Goal: $1 ≥ $3× at c=16 — measured **$2×**: $verdict."
}

# ---------------------------------------------------------------- tools and builds

[[ -x $SILO ]] || fail "$SILO is missing: run \`make build\` first"
needed=(products hello)
[[ $SKIP_EVENTS != 1 ]] && needed+=(events_probe)
[[ $SKIP_SAGAS != 1 ]] && needed+=(users orders payments reference)
[[ $SKIP_BACKENDS != 1 ]] && needed+=(users)
for c in "${needed[@]}"; do
  [[ -f $COMPONENTS/$c.wasm ]] || fail "$COMPONENTS/$c.wasm is missing: run \`make build\` first"
done
command -v curl >/dev/null || fail "curl is needed"

if ! command -v wrk >/dev/null; then
  say "installing wrk (apt-get)"
  sudo=()
  ((EUID == 0)) || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y wrk >&2 || { "${sudo[@]}" apt-get update >&2 && "${sudo[@]}" apt-get install -y wrk >&2; }
fi

if [[ $SKIP_WASMTIME != 1 && ! -x $WASMTIME ]]; then
  say "installing wasmtime-cli $WASMTIME_VERSION into .bench-tools (once; takes 6 minutes or more)"
  timeout 3600 cargo install wasmtime-cli --version "$WASMTIME_VERSION" --locked --root "$TOOLS" >&2
fi

say "building the native baselines (cargo build --release -p silo-bench)"
cargo build --release -p silo-bench >&2

rm -rf "$LOGS" "$PARTIAL"
mkdir -p "$LOGS"

# ---------------------------------------------------------------- the report's header

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(free -g | awk '/^Mem:/ { print $2 }')
commit=$(git rev-parse --short --verify -q HEAD 2>/dev/null || echo "none")
[[ $commit != none && -n $(git status --porcelain 2>/dev/null) ]] && commit="$commit (with uncommitted changes)"
wasmtime_version=$([[ -x $WASMTIME ]] && "$WASMTIME" --version || echo "not installed")
threads=$(nproc)
# Anything else running skews every figure; say so in the report rather than hide it.
# Percentage of CPU time not idle (nor waiting on I/O) over one second, from /proc/stat.
cpu_busy_percent() {
  local a b
  a=$(head -n 1 /proc/stat)
  sleep 1
  b=$(head -n 1 /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN {
      n = split(a, x); split(b, y); total = 0; idle = 0
      for (i = 2; i <= n; i++) total += y[i] - x[i]
      idle = (y[5] - x[5]) + (y[6] - x[6])
      printf "%d", (total > 0) ? 100 * (total - idle) / total : 0
    }'
}
cpu_before=$(cpu_busy_percent)
busy=$((cpu_before >= 10))
((busy)) && say "warning: the CPUs were ${cpu_before}% busy before the runs: other work is running, figures will be low and noisy"

emit "# silo benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
emit ""
[[ $QUICK == 1 ]] && emit "- **Quick mode (BENCH_QUICK=1): a check that every step runs, not a measurement**"
emit "- Command: \`$COMMAND\` (\`make bench\` runs \`./scripts/bench.sh\` after building)"
emit "- Commit: $commit"
emit "- Machine: $threads cores ($cpu), $mem GiB memory, Linux $(uname -r)"
emit "- Load: $(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }'), \`-t2 -cC -d${SECS}s --latency\` (-t1 at c=1), keep-alive, loopback; wrk shares the cores with the server"
emit "- Each figure: of $RUNS run(s) of ${SECS} s per point, the one with the median rps, after a ${WARMUP} s warm-up per server; p50 / p99 latency from that same run"
if ((busy)); then
  emit "- CPU use before the runs: ${cpu_before}% — **the machine was not idle; these figures are not representative**"
else
  emit "- CPU use before the runs: ${cpu_before}% (idle)"
fi
emit "- silo and the native baselines: $threads worker threads (one current-thread runtime and SO_REUSEPORT socket each); wasmtime serve: $wasmtime_version, defaults"
emit ""

# ---------------------------------------------------------------- GET /products/{id}

cat >"$WORK/products.toml" <<TOML
[services.products]
component = "$COMPONENTS/products.wasm"
route = "/products"
publishes = ["ProductCreated", "ProductUpdated"]
[services.products.stores.main]
TOML

say "lookup: starting silo and seeding $PRODUCTS products"
start_silo silo-seed "$WORK/products.toml" "$WORK/lookup-data"
"$BIN/bench-client" seed --base "$SILO_URL" --count "$PRODUCTS" --out "$WORK/ids.txt" >&2
stop "$SILO_PID" strict

mkdir -p "$WORK/native"
store=$WORK/lookup-data/stores/products/main.db
[[ -f $store ]] || fail "silo kept no $store"
for f in "$store" "$store-wal" "$store-shm"; do
  [[ -f $f ]] && cp "$f" "$WORK/native/"
done

say "lookup: restarting silo on the same data, starting native-lookup on a copy"
start_silo silo-lookup "$WORK/products.toml" "$WORK/lookup-data"
sql_args=()
[[ -n ${BENCH_LOOKUP_SQL:-} ]] && sql_args=(--sql "$BENCH_LOOKUP_SQL")
start_native native-lookup "$BIN/native-lookup" --db "$WORK/native/main.db" "${sql_args[@]}"
"$BIN/bench-client" compare --a "$SILO_URL" --b "$NATIVE_URL" --ids "$WORK/ids.txt" >&2

measure lookup "silo $SILO_URL/products/ $WORK/ids.txt" "native $NATIVE_URL/products/ $WORK/ids.txt"
stop "$SILO_PID" strict
stop "$NATIVE_PID"

emit "## GET /products/{id}: silo against native hyper + rusqlite"
emit ""
emit "A random one of $PRODUCTS products per request; both servers read the same rows (checked before the runs)."
emit ""
emit "| connections | silo rps | native rps | silo/native | silo p50 / p99 | native p50 / p99 |"
emit "| ---: | ---: | ---: | ---: | ---: | ---: |"
for c in $LEVELS; do
  emit "| $c | $(field silo "$c" 1) | $(field native "$c" 1) | $(ratio "$(field silo "$c" 1)" "$(field native "$c" 1)") | $(lat silo "$c") | $(lat native "$c") |"
done
emit ""
errors_note silo native
[[ " $LEVELS " == *" 16 "* ]] && goal "silo/native" "$(ratio "$(field silo 16 1)" "$(field native 16 1)")" 0.5
emit ""

# ---------------------------------------------------------------- hello

cat >"$WORK/hello.toml" <<TOML
[services.hello]
component = "$COMPONENTS/hello.wasm"
route = "/"
TOML

say "hello: starting silo, wasmtime serve and native-hello"
start_silo silo-hello "$WORK/hello.toml" "$WORK/hello-data"
targets=("silo $SILO_URL/")
silo_pid=$SILO_PID

wasmtime_pid=
if [[ -x $WASMTIME ]]; then
  pick_port port
  start "$LOGS/wasmtime-serve.log" "$WASMTIME" serve -Scli --addr "127.0.0.1:$port" "$COMPONENTS/hello.wasm"
  wasmtime_pid=$STARTED
  wait_http "$wasmtime_pid" "$LOGS/wasmtime-serve.log" "http://127.0.0.1:$port/" 120
  targets+=("wasmtime http://127.0.0.1:$port/")
else
  say "hello: wasmtime serve left out (not installed)"
fi

start_native native-hello "$BIN/native-hello"
targets+=("native $NATIVE_URL/")

for target in "${targets[@]}"; do
  read -r tag url <<<"$target"
  body=$(curl -fsS --max-time 5 "$url") || fail "$tag ($url) did not answer"
  [[ $body == hello ]] || fail "$tag ($url) answered '$body', expected 'hello'"
done

rm -f "$WORK"/*.runs
measure hello "${targets[@]}"
stop "$silo_pid" strict
[[ -n $wasmtime_pid ]] && stop "$wasmtime_pid"
stop "$NATIVE_PID"

emit "## hello: silo against wasmtime serve and native hyper"
emit ""
emit "\`GET /\` answered \`200 hello\\n\` by components/hello (the same .wasm for silo and wasmtime serve)."
emit ""
if [[ -n $wasmtime_pid ]]; then
  emit "| connections | silo rps | wasmtime serve rps | native rps | silo/wasmtime serve | silo/native | silo p50 / p99 | wasmtime serve p50 / p99 | native p50 / p99 |"
  emit "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for c in $LEVELS; do
    emit "| $c | $(field silo "$c" 1) | $(field wasmtime "$c" 1) | $(field native "$c" 1) | $(ratio "$(field silo "$c" 1)" "$(field wasmtime "$c" 1)") | $(ratio "$(field silo "$c" 1)" "$(field native "$c" 1)") | $(lat silo "$c") | $(lat wasmtime "$c") | $(lat native "$c") |"
  done
  emit ""
  errors_note silo wasmtime native
  [[ " $LEVELS " == *" 16 "* ]] && goal "silo/wasmtime serve" "$(ratio "$(field silo 16 1)" "$(field wasmtime 16 1)")" 3
else
  emit "| connections | silo rps | native rps | silo/native | silo p50 / p99 | native p50 / p99 |"
  emit "| ---: | ---: | ---: | ---: | ---: | ---: |"
  for c in $LEVELS; do
    emit "| $c | $(field silo "$c" 1) | $(field native "$c" 1) | $(ratio "$(field silo "$c" 1)" "$(field native "$c" 1)") | $(lat silo "$c") | $(lat native "$c") |"
  done
  emit ""
  errors_note silo native
  emit "- wasmtime serve: not measured (BENCH_SKIP_WASMTIME=1)."
fi
emit ""

# ---------------------------------------------------------------- events

# events-bench starts its own hosts (127.0.0.1, kernel-picked ports, a temporary data folder each),
# runs the native baseline, and prints its Markdown section; its hosts' logs go to $LOGS/events-*.log.
if [[ $SKIP_EVENTS == 1 ]]; then
  say "events: left out (BENCH_SKIP_EVENTS=1)"
else
  say "events: throughput, delivery lag and the native baseline (target/release/events-bench)"
  out=$(timeout 1800 "$BIN/events-bench" --silo "$SILO" --probe "$COMPONENTS/events_probe.wasm" --log-dir "$LOGS") ||
    fail "the events benchmark failed (its hosts' logs: $LOGS/events-*.log)"
  emit "$out"
  emit ""
fi

# ---------------------------------------------------------------- sagas

# saga-bench starts its own hosts (the five services of silo.toml; 127.0.0.1, kernel-picked
# ports, a temporary data folder each), runs the native baseline, and prints its Markdown section;
# its hosts' logs go to $LOGS/sagas-*.log.
if [[ $SKIP_SAGAS == 1 ]]; then
  say "sagas: left out (BENCH_SKIP_SAGAS=1)"
else
  say "sagas: throughput, latency and the native baseline (target/release/saga-bench)"
  out=$(timeout 1800 "$BIN/saga-bench" --silo "$SILO" --components "$COMPONENTS" --log-dir "$LOGS") ||
    fail "the saga benchmark failed (its hosts' logs: $LOGS/sagas-*.log)"
  emit "$out"
  emit ""
fi

# ---------------------------------------------------------------- SQL backends

# backend-bench starts its own hosts (users on SQLite, then PostgreSQL, then MariaDB; 127.0.0.1,
# kernel-picked ports, a temporary data folder each), runs the same statements natively, and
# prints its Markdown section; its hosts' logs go to $LOGS/backends-*.log. Needs PostgreSQL at
# BENCH_POSTGRES_URL and MariaDB at BENCH_MYSQL_URL unless BENCH_BACKENDS leaves them out.
if [[ $SKIP_BACKENDS == 1 ]]; then
  say "backends: left out (BENCH_SKIP_BACKENDS=1)"
else
  say "backends: insert and point lookup on SQLite, PostgreSQL and MariaDB, and natively (target/release/backend-bench)"
  out=$(timeout 900 "$BIN/backend-bench" --silo "$SILO" --component "$COMPONENTS/users.wasm" --log-dir "$LOGS") ||
    fail "the SQL backends benchmark failed (its hosts' logs: $LOGS/backends-*.log)"
  emit "$out"
  emit ""
fi

# ---------------------------------------------------------------- instantiation

if [[ $SKIP_INSTANTIATE == 1 ]]; then
  say "in-process: left out (BENCH_SKIP_INSTANTIATE=1)"
else
emit "## Instantiation"
emit ""
# >>> INSTANTIATION BENCHMARK: the host's in-process measurements (host/benches/instantiate.rs):
# one instantiation, whole requests without the network against native, API composition,
# start-up cold and cached, deploy to serving. Whatever it prints (Markdown) goes in as is.
say "in-process: cargo bench -p silo --bench instantiate"
out=$(cd "$ROOT" && timeout 900 cargo bench -q -p silo --bench instantiate 2>"$LOGS/instantiate.log") ||
  fail "the in-process bench failed (log: $LOGS/instantiate.log)"
emit "$out"
# <<< INSTANTIATION BENCHMARK
emit ""
fi

mv "$PARTIAL" "$REPORT"
say "report written to target/bench/$REPORT_NAME"
