#!/usr/bin/env bash
# make bench-2969: the catalog's section D performance scenario, 2969
# 放贷结果查询 from CUS to SCF (fixture fixtures/2969/disbursed.toml),
# measured three ways against the same simulated SCF:
#
#   direct   txgate bench → simulator
#   HAProxy  txgate bench → HAProxy (TCP mode) → simulator
#   txgate   txgate bench → txgate serve (real config, no --simulate) → simulator
#   txgate-mux  the same gateway tuned with --pool-mode SCF=multiplex
#            --pool-max SCF=1: every caller's requests share one pipelined
#            connection to SCF, written in batches (needs a backend that
#            answers pipelined requests and echoes channel and SeqNo)
#
# each with long (persistent) and short (one per request) caller
# connections, 64 connections, ROUNDS rounds interleaved (the order of the
# setups rotates every round, so drift and warm caches favour no one).
#
# Output: a table per setup (TPS min/median/max, p50/p99, CPU µs per
# message of the proxy in the middle and of the simulator, TPS relative to
# HAProxy), out/bench-2969.json, out/bench-2969.html (the setups side by
# side), every run's JSON in out/bench-2969/, and the table written into
# README.md between <!-- bench-2969:begin --> and <!-- bench-2969:end -->
# (only there, and only if both markers exist).
#
# Knobs (environment): DURATION (6s) WARMUP (1s) ROUNDS (3) CONNS (64),
# MODES ("long short"), SHORT_FLAGS ("--rst-close"; empty: close with FIN),
# GW_FLAGS (extra `txgate serve` flags, e.g. "--pool-max SCF=32" or
# "--no-journal"; default "--workers 1": on this 2-core box the generator and the
# simulator share the cores, and one worker saves the cross-thread wake-ups),
# GW_MUX_FLAGS (the txgate-mux gateway's flags; default GW_FLAGS plus
# "--pool-mode SCF=multiplex --pool-max SCF=1"), MUX=0 (skip txgate-mux),
# PERF=1 or PERF=txgate (one extra run of the shipped gateway under
# `perf record -g`, report in out/), PERF=txgate-mux (the same, tuned one),
# README=0 (leave README.md alone), CARGO, CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

CARGO=${CARGO:-cargo}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=${DURATION:-6s}
WARMUP=${WARMUP:-1s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
MODES=${MODES:-long short}
# Short connections end with RST (SO_LINGER 0) so that the generator keeps
# no TIME_WAIT: with FIN, ~60k TIME_WAIT sockets on one address pair make
# the generator's own connect() (ephemeral port search) the bottleneck, at
# the same ~14k connections/s whatever the target. SHORT_FLAGS= for FIN.
SHORT_FLAGS=${SHORT_FLAGS---rst-close}
GW_FLAGS=${GW_FLAGS---workers 1}
GW_MUX_FLAGS=${GW_MUX_FLAGS-$GW_FLAGS --pool-mode SCF=multiplex --pool-max SCF=1}
case "${MUX:-1}" in 0 | no | false | off) MUX=0 ;; *) MUX=1 ;; esac
case "${PERF:-0}" in
    0 | "") PERF_SETUP="" ;;
    1 | txgate) PERF_SETUP=txgate ;;
    txgate-mux) PERF_SETUP=txgate-mux ;;
    *) echo "bench-2969: PERF=$PERF: give 1, txgate or txgate-mux" >&2; exit 2 ;;
esac
if [ "$PERF_SETUP" = txgate-mux ] && [ "$MUX" = 0 ]; then
    echo "bench-2969: PERF=txgate-mux needs MUX on" >&2; exit 2
fi
FIXTURE=fixtures/2969/disbursed.toml
OUT=$ROOT/out
RUNS=$OUT/bench-2969
WORK=$(mktemp -d "${TMPDIR:-/tmp}/txgate-bench-2969.XXXXXX")

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

say() { echo "bench-2969: $*" >&2; }

# ---- prerequisites
if ! command -v haproxy >/dev/null 2>&1; then
    say "HAProxy is missing; installing it from Debian"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y haproxy
fi
say "building txgate (release)"
$CARGO build --release --quiet
BIN=$TARGET_DIR/release/txgate
[ -x "$BIN" ] || { say "no $BIN"; exit 1; }

NPROC=$(nproc)
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
say "machine: $NPROC × ${CPU_MODEL:-unknown CPU}, Linux $(uname -r)"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_BEFORE%% *}" 'BEGIN { exit !(l > 0.5) }'; then
    say "load average $LOAD_BEFORE before the bench: the machine is busy, numbers will be noisy"
fi

# Waits until FILE has a line starting with PREFIX and prints its last
# field (the address); fails after 30 s or when PID died.
wait_line() {
    local file=$1 prefix=$2 pid=$3 i line
    for i in $(seq 300); do
        line=$(grep -m1 "^$prefix" "$file" 2>/dev/null || true)
        if [ -n "$line" ]; then
            echo "${line##* }"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            say "process $pid exited before printing \"$prefix\""
            return 1
        fi
        sleep 0.1
    done
    say "no \"$prefix\" line in 30 s"
    return 1
}

# A free local TCP port (the kernel's pick).
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
        return
    fi
    local p
    while :; do
        p=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
}

# Waits until something accepts connections on ADDR (host:port).
wait_port() {
    local host=${1%:*} port=${1##*:} pid=$2 i
    for i in $(seq 300); do
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || { say "process $pid exited"; return 1; }
        sleep 0.1
    done
    say "nothing listens on $1 after 30 s"
    return 1
}

# ---- the simulated SCF
"$BIN" sim --config gateway.toml --backend SCF --listen 127.0.0.1:0 \
    >"$WORK/sim.out" 2>"$WORK/sim.err" &
SIM_PID=$!
PIDS+=("$SIM_PID")
SIM_ADDR=$(wait_line "$WORK/sim.out" "SIMULATOR SCF" "$SIM_PID")
say "simulated SCF on $SIM_ADDR (pid $SIM_PID)"

# ---- the gateway: a copy of gateway.toml, absolute paths, SCF at the simulator
awk -v root="$ROOT" -v sim="$SIM_ADDR" '
    /^\[\[backend\]\]/ { in_backend = 1; is_scf = 0 }
    /^\[/ && !/^\[\[backend\]\]/ { in_backend = 0 }
    in_backend && /^id *= *"SCF"/ { is_scf = 1 }
    in_backend && is_scf && /^address *=/ { print "address = \"" sim "\""; next }
    /^header *= *"/ { sub(/= *"/, "= \"" root "/") }
    /^schemas *= *"/ { sub(/= *"/, "= \"" root "/") }
    /^fixtures *= *"/ { sub(/= *"/, "= \"" root "/") }
    { print }
' gateway.toml >"$WORK/gateway.toml"
grep -q "address = \"$SIM_ADDR\"" "$WORK/gateway.toml" || { say "could not point SCF at the simulator"; exit 1; }
"$BIN" check --config "$WORK/gateway.toml" >/dev/null
# As shipped (journal on, info logs), but the admin port on a free port and
# the journal in the temp folder. start_gateway NAME FLAGS sets GW_PID and
# GW_ADDR.
start_gateway() {
    local name=$1 flags=$2 journal=(--journal "$WORK/journal-$1.jsonl")
    case " $flags " in *" --no-journal "*) journal=() ;; esac
    # shellcheck disable=SC2086
    "$BIN" serve --config "$WORK/gateway.toml" --listen 127.0.0.1:0 \
        --admin 127.0.0.1:0 "${journal[@]}" $flags \
        >"$WORK/$name.out" 2>"$WORK/$name.err" &
    GW_PID=$!
    PIDS+=("$GW_PID")
    GW_ADDR=$(wait_line "$WORK/$name.out" "READY main" "$GW_PID")
    say "$name on $GW_ADDR (pid $GW_PID) ${flags:+with $flags}"
}
start_gateway txgate "$GW_FLAGS"
SETUPS=(direct HAProxy txgate)
if [ "$MUX" = 1 ]; then
    TXGATE_PID=$GW_PID TXGATE_ADDR=$GW_ADDR
    start_gateway txgate-mux "$GW_MUX_FLAGS"
    MUX_PID=$GW_PID MUX_ADDR=$GW_ADDR
    GW_PID=$TXGATE_PID GW_ADDR=$TXGATE_ADDR
    SETUPS+=(txgate-mux)
fi

# ---- HAProxy in front of the same simulator
HA_PORT=$(free_port)
HA_ADDR=127.0.0.1:$HA_PORT
sed -e "s|@LISTEN@|$HA_ADDR|" -e "s|@BACKEND@|$SIM_ADDR|" -e "s|@NBTHREAD@|$NPROC|" \
    benches/haproxy-2969.cfg >"$WORK/haproxy.cfg"
haproxy -c -q -f "$WORK/haproxy.cfg"
haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.out" 2>&1 &
HA_PID=$!
PIDS+=("$HA_PID")
wait_port "$HA_ADDR" "$HA_PID"
say "HAProxy $(haproxy -v | awk 'NR==1 { print $3 }') on $HA_ADDR (pid $HA_PID, nbthread $NPROC)"

# ---- the runs
rm -rf "$RUNS"
mkdir -p "$RUNS"
# One run: LABEL ADDR MODE ROUND [PROXY_PID]
one_run() {
    local label=$1 addr=$2 mode=$3 round=$4 proxy=${5:-}
    local long=() watch=(--watch-pid "sim=$SIM_PID")
    if [ "$mode" = long ]; then long=(--long); else read -r -a long <<<"$SHORT_FLAGS"; fi
    [ -n "$proxy" ] && watch+=(--watch-pid "proxy=$proxy")
    "$BIN" bench --to "$addr" --config gateway.toml --fixture "$FIXTURE" \
        --connections "$CONNS" "${long[@]}" --duration "$DURATION" --warmup "$WARMUP" \
        --label "$label" "${watch[@]}" --quiet \
        --json "$RUNS/$label-$mode-$round.json" >"$WORK/run.txt" ||
        say "$label $mode round $round had errors (see $RUNS/$label-$mode-$round.json)"
    awk -v l="$label" -v m="$mode" -v r="$round" '
        /^requests/ { tps = $NF; for (i = 1; i <= NF; i++) if ($i == "TPS") tps = $(i + 1); errs = $6 }
        /^latency/ { p50 = $4; p99 = $8 }
        END { printf "bench-2969: round %s %-5s %-8s TPS %8s  p50 %s ms  p99 %s ms  errors %s\n", r, m, l, tps, p50, p99, errs }
    ' "$WORK/run.txt" >&2
}

addr_of() { case $1 in direct) echo "$SIM_ADDR" ;; HAProxy) echo "$HA_ADDR" ;; txgate) echo "$GW_ADDR" ;; txgate-mux) echo "$MUX_ADDR" ;; esac; }
pid_of() { case $1 in direct) echo "" ;; HAProxy) echo "$HA_PID" ;; txgate) echo "$GW_PID" ;; txgate-mux) echo "$MUX_PID" ;; esac; }

N_SETUPS=${#SETUPS[@]}
say "$ROUNDS rounds × {$MODES} × {${SETUPS[*]}}, $CONNS connections, warm-up $WARMUP + $DURATION each"
for round in $(seq "$ROUNDS"); do
    for mode in $MODES; do
        for k in $(seq 0 $((N_SETUPS - 1))); do
            setup=${SETUPS[$(((k + round - 1) % N_SETUPS))]}
            one_run "$setup" "$(addr_of "$setup")" "$mode" "$round" "$(pid_of "$setup")"
        done
    done
done

# ---- optional profile of the gateway
if [ -n "$PERF_SETUP" ] && command -v perf >/dev/null 2>&1; then
    say "profiling $PERF_SETUP (perf record -g, long connections)"
    PROFILE=$OUT/perf-$PERF_SETUP
    secs=$(( ${DURATION%s} + 1 ))
    # DWARF call graphs: the release profile keeps no frame pointers.
    perf record -F 499 --call-graph dwarf,16384 -p "$(pid_of "$PERF_SETUP")" -o "$PROFILE.data" \
        -- sleep "$secs" >/dev/null 2>"$WORK/perf.err" &
    PERF_PID=$!
    "$BIN" bench --to "$(addr_of "$PERF_SETUP")" --fixture "$FIXTURE" --connections "$CONNS" --long \
        --duration "$DURATION" --warmup 0s --quiet --label "$PERF_SETUP-perf" >/dev/null || true
    wait "$PERF_PID" || true
    {
        echo "# $PERF_SETUP under load: CPU by binary (self time)"
        perf report -i "$PROFILE.data" --stdio --no-children --sort dso -g none 2>/dev/null |
            grep -E '^ +[0-9.]+%'
        echo
        echo "# top symbols, self time"
        perf report -i "$PROFILE.data" --stdio --no-children --sort symbol -g none \
            --percent-limit 0.7 2>/dev/null | grep -E '^ +[0-9.]+%' | sed -E 's/[ -]+$//'
        echo
        echo "# txgate functions, including callees (children)"
        perf report -i "$PROFILE.data" --stdio --children --sort symbol -g none \
            --percent-limit 2 2>/dev/null | grep -E '^ +[0-9.]+%' | grep -E 'txgate::|tokio::|journal' |
            sed -E 's/[ -]+$//' | head -n 40
    } >"$PROFILE.txt" || true
    say "profile summary in $PROFILE.txt; top symbols (self time):"
    sed -n '/# top symbols/,/^$/p' "$PROFILE.txt" | head -n 22 >&2
fi

# ---- the summary
shopt -s nullglob
MUX_RUNS=()
[ "$MUX" = 1 ] && MUX_RUNS=("$RUNS"/txgate-mux-*.json)
"$BIN" bench --summarize "$RUNS"/direct-*.json "$RUNS"/HAProxy-*.json "$RUNS"/txgate-long-*.json \
    "$RUNS"/txgate-short-*.json "${MUX_RUNS[@]}" \
    --baseline HAProxy \
    --json "$OUT/bench-2969.json" --report "$OUT/bench-2969.html" \
    --markdown "$OUT/bench-2969.md" >"$WORK/summary.txt"
echo
echo "2969 放贷结果查询 CUS → SCF, $CONNS connections, $ROUNDS rounds of $DURATION (after $WARMUP warm-up):"
echo
cat "$WORK/summary.txt"
echo
echo "load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
[ -n "$SHORT_FLAGS" ] && echo "short connections: the generator closes each with $SHORT_FLAGS (RST; no TIME_WAIT at the generator)"
echo "proxy CPU = txgate's or HAProxy's utime+stime (/proc/PID/stat) over the measured window, per answered message."
echo "written: out/bench-2969.json, out/bench-2969.html, out/bench-2969.md, out/bench-2969/*.json"

# ---- README.md, between the markers only
if [ "${README:-1}" = 1 ] && grep -q '<!-- bench-2969:begin -->' README.md && grep -q '<!-- bench-2969:end -->' README.md; then
    {
        echo "Measured by \`make bench-2969\` on $(date -u +%Y-%m-%d): 2969 from CUS, fixture \`$FIXTURE\`,"
        echo "$CONNS connections, $ROUNDS interleaved rounds of $DURATION after a $WARMUP warm-up; the load generator,"
        echo "the simulated SCF and the proxy share the machine (load average before: $LOAD_BEFORE)."
        [ -n "$SHORT_FLAGS" ] && echo "Short connections are closed by the generator with \`$SHORT_FLAGS\` (RST, no TIME_WAIT on its side)."
        echo
        cat "$OUT/bench-2969.md"
    } >"$WORK/table.md"
    awk -v table="$WORK/table.md" '
        /<!-- bench-2969:begin -->/ { print; while ((getline l < table) > 0) print l; skip = 1; next }
        /<!-- bench-2969:end -->/ { skip = 0 }
        !skip { print }
    ' README.md >"$WORK/README.md"
    cat "$WORK/README.md" >README.md
    say "README.md: table written between the bench-2969 markers"
else
    say "README.md has no bench-2969 markers (or README=0): left alone"
fi
