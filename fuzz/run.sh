#!/usr/bin/env bash
# make fuzz: run every cargo-fuzz target of txgate for a bounded time.
#
#   FUZZ_SECONDS=60     seconds per target (default 60)
#   FUZZ_TARGETS="..."  which targets (default: frame header fixed_body xml)
#   FUZZ_SANITIZER=...  address (default; falls back to none if it cannot
#                       build) or none
#   FUZZ_JOBS=1         libFuzzer jobs per target
#
# Only the stable toolchain is here, and cargo-fuzz needs nightly flags
# (-Z sanitizer, -C passes=sancov): RUSTC_BOOTSTRAP=1 lets stable rustc
# accept them. The seed corpus is rebuilt from fixtures/ (`txgate encode`,
# fixed and XML forms) and ../shared/spec/vectors/*.bin on every run; what
# libFuzzer adds to fuzz/corpus/<target>/ is kept between runs. A crash
# leaves its input in fuzz/artifacts/<target>/ and makes this script exit 1
# after the other targets have run.
set -euo pipefail

FUZZ_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$FUZZ_DIR/.." && pwd)
SECS=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-"frame header fixed_body xml"}
SANITIZER=${FUZZ_SANITIZER:-address}
JOBS=${FUZZ_JOBS:-1}
VECTORS="$ROOT/../shared/spec/vectors"
export RUSTC_BOOTSTRAP=1

log() { printf 'fuzz: %s\n' "$*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# ---- seed corpus -------------------------------------------------------
log "building txgate for the seed corpus"
(cd "$ROOT" && cargo build --quiet --bin txgate)
TXGATE="${CARGO_TARGET_DIR:-$ROOT/target}/debug/txgate"
case "$TXGATE" in /*) ;; *) TXGATE="$ROOT/$TXGATE" ;; esac

for t in frame header fixed_body xml; do
    mkdir -p "$FUZZ_DIR/corpus/$t"
done
seeds=0
# `seed NAME FRAMED-FILE PREFIX-LEN`: the framed bytes seed `frame`; the
# message without its length prefix seeds the three message targets.
seed() {
    local name=$1 file=$2 prefix=$3
    cp "$file" "$FUZZ_DIR/corpus/frame/seed-$name"
    local dir
    for dir in header fixed_body xml; do
        tail -c +"$((prefix + 1))" "$file" >"$FUZZ_DIR/corpus/$dir/seed-$name"
    done
    seeds=$((seeds + 1))
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for fixture in "$ROOT"/fixtures/*/*.toml; do
    code=$(basename "$(dirname "$fixture")")
    name="$code-$(basename "$fixture" .toml)"
    for form in fixed xml; do
        flag=()
        [ "$form" = xml ] && flag=(--xml)
        if (cd "$ROOT" && "$TXGATE" encode "${flag[@]}" "$fixture") >"$tmp/msg" 2>"$tmp/err"; then
            seed "$name-$form" "$tmp/msg" 8
        else
            log "skipping seed $name ($form): $(head -n1 "$tmp/err")"
        fi
    done
done
for bin in "$ROOT"/fixtures/*/*.bin; do
    [ -e "$bin" ] || continue
    seed "golden-$(basename "$(dirname "$bin")")-$(basename "$bin" .bin)" "$bin" 8
done
if [ -d "$VECTORS" ]; then
    for bin in "$VECTORS"/*.bin; do
        [ -e "$bin" ] || continue
        prefix=8
        case "$(basename "$bin")" in *u32*) prefix=4 ;; esac
        seed "vector-$(basename "$bin" .bin)" "$bin" "$prefix"
    done
else
    log "no $VECTORS: seeding from fixtures only"
fi
log "$seeds seeds"

# ---- build -------------------------------------------------------------
cd "$FUZZ_DIR"
if [ "$SANITIZER" != none ] && ! cargo fuzz build --sanitizer "$SANITIZER" >"$tmp/build.log" 2>&1; then
    log "building with --sanitizer $SANITIZER failed; using none:"
    tail -n 5 "$tmp/build.log" >&2
    SANITIZER=none
fi
if [ "$SANITIZER" = none ]; then
    cargo fuzz build --sanitizer none
fi

# ---- run ---------------------------------------------------------------
failed=()
summary=()
for t in $TARGETS; do
    log "running $t for ${SECS}s (sanitizer $SANITIZER)"
    mkdir -p "$FUZZ_DIR/artifacts/$t"
    out="$tmp/$t.log"
    set +e
    cargo fuzz run --sanitizer "$SANITIZER" --jobs "$JOBS" "$t" "$FUZZ_DIR/corpus/$t" -- \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        2>&1 | tee "$out" | grep -E '^(Done|INFO: seed corpus|==[0-9]+==|SUMMARY|thread .* panicked)|crash-|timeout-|oom-' >&2
    rc=${PIPESTATUS[0]}
    set -e
    runs=$(grep -Eo '^Done [0-9]+ runs' "$out" | tail -n1 | grep -Eo '[0-9]+' || true)
    cov=$(grep -Eo 'cov: [0-9]+' "$out" | tail -n1 | grep -Eo '[0-9]+' || true)
    corpus=$(find "$FUZZ_DIR/corpus/$t" -type f | wc -l)
    if [ "$rc" -ne 0 ]; then
        failed+=("$t")
        summary+=("$t: FAILED (exit $rc) after ${runs:-?} runs; see fuzz/artifacts/$t/")
        grep -E "panicked at|^SUMMARY" "$out" | head -n 3 >&2 || true
    else
        summary+=("$t: ${runs:-?} runs in ${SECS}s, cov ${cov:-?}, corpus $corpus, no crash")
    fi
done

printf '\n' >&2
for line in "${summary[@]}"; do log "$line"; done
if [ "${#failed[@]}" -ne 0 ]; then
    log "crashes in: ${failed[*]}"
    exit 1
fi
