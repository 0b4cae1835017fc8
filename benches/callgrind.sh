#!/usr/bin/env bash
# make bench-callgrind: instructions per codec operation, counted by
# valgrind's callgrind — repeatable on a noisy, shared machine where
# wall-clock benchmarks are not.
#
# The release-built `codec` bench binary (benches/codec.rs) has a mode
# for this: TXGATE_CALLGRIND=OP:N repeats one operation N times and does
# nothing else. Each operation runs twice, with N1 and N2 repetitions, and
# the difference divided by N2-N1 is the cost of one operation: start-up,
# fixture loading and message building cancel out.
#
#   OPS="fixed-decode header-check" N1=200 N2=2200 bash benches/callgrind.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
N1=${N1:-100}
N2=${N2:-1100}
OPS=${OPS:-"fixed-decode header-check frame-decode fixed-encode xml-decode"}
OUT=${OUT:-out/callgrind}

if ! command -v valgrind >/dev/null 2>&1; then
    echo "valgrind is missing; installing it from Debian" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind
fi

echo "building the codec bench binary (release profile)…" >&2
BIN=$($CARGO bench --bench codec --no-run --message-format=json 2>/dev/null |
    grep -o '"executable":"[^"]*codec-[^"]*"' | tail -n 1 | sed 's/.*"executable":"\([^"]*\)"/\1/')
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
    echo "could not find the codec bench executable (cargo bench --bench codec --no-run)" >&2
    exit 1
fi
mkdir -p "$OUT"

# Total instructions (Ir) of one callgrind run.
instructions() {
    local op=$1 n=$2 file="$OUT/$1.$2.out"
    TXGATE_CALLGRIND="$op:$n" valgrind --tool=callgrind --callgrind-out-file="$file" \
        "$BIN" >/dev/null 2>"$OUT/$op.$n.log"
    awk '/^(summary|totals):/ { print $2; exit }' "$file"
}

printf '%-14s %14s %14s %12s\n' "operation" "Ir (N=$N1)" "Ir (N=$N2)" "Ir / op"
for op in $OPS; do
    a=$(instructions "$op" "$N1")
    b=$(instructions "$op" "$N2")
    per=$(( (b - a) / (N2 - N1) ))
    printf '%-14s %14s %14s %12s\n' "$op" "$a" "$b" "$per"
done

if command -v callgrind_annotate >/dev/null 2>&1; then
    echo
    echo "where fixed-decode spends its instructions (N=$N2, self cost, top 12):"
    callgrind_annotate "$OUT/fixed-decode.$N2.out" 2>/dev/null |
        grep -E '^ *[0-9,]+ ' | grep -v 'PROGRAM TOTALS' | head -n 12 |
        sed -E 's#/rustc/[0-9a-f]+/##; s# \[[^]]*\]$##' || true
fi
echo
echo "callgrind files: $OUT/"
