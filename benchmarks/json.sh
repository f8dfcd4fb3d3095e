#!/usr/bin/env bash
# JSON output against table output, command by command, under ~54,000 established loopback
# TCP connections; `connections PORT --json` against `ss -tni` with the same filter; and
# `ports --all --json` against the C floor's sock_diag dump. One run, side by side.
#
#   benchmarks/json.sh                    # 54,000 connections (108,000 sockets)
#   BENCH_CONNS=8000 benchmarks/json.sh   # quick run (16,000 sockets)
#
# Environment (all optional):
#   BENCH_CONNS     established connections to hold        (default 54000)
#   BENCH_PORT      listener port on 127.0.0.1              (default 29427, next free of 10)
#   BENCH_RUNS      hyperfine --runs                        (default 7)
#   BENCH_WARMUP    hyperfine --warmup                      (default 1)
#   BENCH_SETTLE    seconds to let the kernel settle        (default 20)
#   BENCH_LIFETIME  holder exits by itself after N seconds  (default 900)
#   PORTWATCH       use this binary and skip the swift build
#   BENCH_OUT       where results go                        (default benchmarks/out-json)
#
# Targets: every `--json` ≤ 1.1× the same command's table; `connections PORT --json` ≤ 0.5×
# `ss -tni '( sport = :PORT or dport = :PORT )'`; `ports --all --json` ≤ 1.5× the floor's dump-tcp
# (not reachable with exact owners: the fd walk alone costs more, see RESULTS.md) and ≤ 1.5× the
# floor's dump+walk (the same work in C).
# Traffic goes to loopback only; the holder is killed on exit (trap).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

CONNS="${BENCH_CONNS:-54000}"
PORT="${BENCH_PORT:-29427}"
RUNS="${BENCH_RUNS:-7}"
WARMUP="${BENCH_WARMUP:-1}"
SETTLE="${BENCH_SETTLE:-20}"
LIFETIME="${BENCH_LIFETIME:-900}"
OUT="${BENCH_OUT:-$HERE/out-json}"
BIN="$HERE/bin"

TARGET_JSON=1.1      # command --json / command (table)
TARGET_SS=0.5        # connections PORT --json / ss -tni with the same filter
TARGET_FLOOR=1.5     # ports --all --json / floor dump-tcp

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'json.sh: %s\n' "$*" >&2; exit 1; }

for tool in cc ss hyperfine jq awk; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y hyperfine jq)"
done
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 19100 ] || die "open-file limit $(ulimit -n) < 19100"
mkdir -p "$BIN" "$OUT"

log "building hold_sockets and floor"
cc -O2 -Wall -Wextra -o "$BIN/hold_sockets" "$HERE/hold_sockets.c"
cc -O2 -Wall -Wextra -pthread -o "$BIN/floor" "$HERE/floor.c"
if [ -n "${PORTWATCH:-}" ]; then
    PW="$PORTWATCH"
else
    log "building portwatch (release, --scratch-path .build-bench)"
    (cd "$ROOT" && swift build -c release --scratch-path .build-bench --product portwatch) >&2
    PW="$ROOT/.build-bench/release/portwatch"
fi
[ -x "$PW" ] || die "no portwatch binary at $PW"

HOLDER_PID=""
HOLDER_LOG="$OUT/holder.log"
cleanup() {
    if [ -n "$HOLDER_PID" ] && kill -0 "$HOLDER_PID" 2>/dev/null; then
        kill -TERM "$HOLDER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$HOLDER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$HOLDER_PID" 2>/dev/null || true
        wait "$HOLDER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_holder() {
    local port=$1
    if [ -n "$(ss -tanH "sport = :$port" | grep -v '^TIME-WAIT')" ]; then return 1; fi
    log "holding $CONNS connections on 127.0.0.1:$port"
    "$BIN/hold_sockets" -p "$port" -n "$CONNS" -t "$LIFETIME" >"$HOLDER_LOG" 2>&1 &
    HOLDER_PID=$!
    local deadline=$((SECONDS + 180))
    until grep -q '^ready ' "$HOLDER_LOG"; do
        if ! kill -0 "$HOLDER_PID" 2>/dev/null; then
            wait "$HOLDER_PID" 2>/dev/null || true
            HOLDER_PID=""
            grep -q 'bind listener' "$HOLDER_LOG" && return 1
            cat "$HOLDER_LOG" >&2; die "holder exited early"
        fi
        [ "$SECONDS" -lt "$deadline" ] || die "holder not ready after 180s"
        sleep 0.5
    done
}
started=0
for candidate in $(seq "$PORT" $((PORT + 9))); do
    if start_holder "$candidate"; then PORT=$candidate; started=1; break; fi
done
[ "$started" = 1 ] || die "ports $PORT-$((PORT + 9)) all busy; set BENCH_PORT"
log "letting the kernel settle for ${SETTLE}s"
sleep "$SETTLE"

FREE=$("$PW" free)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
HF=(hyperfine --warmup "$WARMUP" --runs "$RUNS" --shell=none --output=null --style=basic -i)

# name|arguments (the table form; the JSON form adds --json)
PAIRS=(
    "ports|ports"
    "ports --all|ports --all"
    "ports PORT|ports $PORT"
    "check PORT|check $PORT --expect listening"
    "check 1-65535|check 1-65535"
    "connections PORT|connections $PORT"
    "who PORT|who $PORT"
    "free --count 200|free --count 200"
    "wait PORT|wait $PORT --until listening --timeout 5s"
    "kill FREE|kill $FREE --yes"
)
i=0
for pair in "${PAIRS[@]}"; do
    name=${pair%%|*}; args=${pair#*|}
    log "$name: table vs --json"
    "${HF[@]}" --export-json "$OUT/pair$i.json" -n "table" "$PW $args" -n "json" "$PW $args --json" >&2
    i=$((i + 1))
done

log "connections $PORT --json vs ss -tni with the same filter"
FILTER="( sport = :$PORT or dport = :$PORT )"
"${HF[@]}" --export-json "$OUT/ss.json" \
    -n "portwatch connections $PORT --json" "$PW connections $PORT --json" \
    -n "ss -tni '$FILTER'" "ss -tni '$FILTER'" >&2

log "ports --all --json vs the C floor (medians of $RUNS)"
"${HF[@]}" --export-json "$OUT/all.json" \
    -n "ports --all --json" "$PW ports --all --json" \
    -n "ports --all --json --no-processes" "$PW ports --all --json --no-processes" >&2
"$BIN/floor" -r "$RUNS" | tee "$OUT/floor.txt" >&2
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

median() { jq -r --arg n "$2" '.results[] | select(.command == $n) | .median' "$1"; }
ms() { awk -v s="$1" 'BEGIN { printf "%.1f ms", s * 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r <= t) ? "PASS" : "FAIL" }'; }

{
    echo "portwatch JSON benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), kernel $(uname -r)"
    echo "connections held: $CONNS established on 127.0.0.1:$PORT ($((2 * CONNS)) sockets)"
    echo "hyperfine --warmup $WARMUP --runs $RUNS --shell=none --output=null; wall-time medians"
    echo "load average before/after: $LOAD_BEFORE / $LOAD_AFTER"
    echo
    echo "| command | table | --json | json/table | target | result |"
    echo "|---|---|---|---|---|---|"
    i=0
    for pair in "${PAIRS[@]}"; do
        name=${pair%%|*}
        t=$(median "$OUT/pair$i.json" table); j=$(median "$OUT/pair$i.json" json); r=$(ratio "$j" "$t")
        echo "| \`$name\` | $(ms "$t") | $(ms "$j") | $r | ≤ $TARGET_JSON | $(verdict "$r" "$TARGET_JSON") |"
        i=$((i + 1))
    done
    echo
    c=$(median "$OUT/ss.json" "portwatch connections $PORT --json"); s=$(median "$OUT/ss.json" "ss -tni '$FILTER'")
    r=$(ratio "$c" "$s")
    echo "| comparison | portwatch | peer | ratio | target | result |"
    echo "|---|---|---|---|---|---|"
    echo "| \`connections $PORT --json\` vs \`ss -tni '$FILTER'\` | $(ms "$c") | $(ms "$s") | $r | ≤ $TARGET_SS | $(verdict "$r" "$TARGET_SS") |"
    a=$(median "$OUT/all.json" "ports --all --json"); n=$(median "$OUT/all.json" "ports --all --json --no-processes")
    d=$(awk '/^dump-tcp / { print $2 / 1000; exit }' "$OUT/floor.txt")
    if [ -n "$d" ]; then
        r=$(ratio "$a" "$d")
        echo "| \`ports --all --json\` vs floor \`dump-tcp\` | $(ms "$a") | $(ms "$d") | $r | ≤ $TARGET_FLOOR | $(verdict "$r" "$TARGET_FLOOR") |"
        echo "| \`ports --all --json --no-processes\` vs floor \`dump-tcp\` | $(ms "$n") | $(ms "$d") | $(ratio "$n" "$d") | (info) | - |"
    fi
    # The least the same answer costs in C: the dump beside a walk of every fd (the kernel's
    # readlink per fd is most of it).
    w=$(awk '/^dump\+walk-/ { print $2 / 1000; exit }' "$OUT/floor.txt")
    if [ -n "$w" ]; then
        r=$(ratio "$a" "$w")
        echo "| \`ports --all --json\` vs floor \`dump+walk\` (dump beside a walk of every fd, in C) | $(ms "$a") | $(ms "$w") | $r | ≤ $TARGET_FLOOR | $(verdict "$r" "$TARGET_FLOOR") |"
    fi
    echo
    echo "C floor (bin/floor -r $RUNS):"
    echo
    echo '```'
    cat "$OUT/floor.txt"
    echo '```'
} | tee "$OUT/summary.md"
