#!/usr/bin/env bash
# portwatch vs ss/lsof under ~54,000 established loopback TCP connections.
#
#   benchmarks/run.sh                    # full run (54,000 connections)
#   BENCH_CONNS=5000 benchmarks/run.sh   # quick run
#
# Environment (all optional):
#   BENCH_CONNS     established connections to hold        (default 54000)
#   BENCH_PORT      listener port on 127.0.0.1              (default 47100)
#   BENCH_BYTES     bytes each way per connection           (default 1024)
#   BENCH_RUNS      hyperfine --runs                        (default 10)
#   BENCH_WARMUP    hyperfine --warmup                      (default 2)
#   BENCH_LIFETIME  holder exits by itself after N seconds  (default 900)
#   BENCH_READY_TIMEOUT  seconds to wait for "ready"        (default 180)
#   BENCH_MEM_RUNS  /usr/bin/time -v repetitions            (default 3)
#   PORTWATCH       use this binary and skip the swift build
#   BENCH_OUT       where results go                        (default benchmarks/out)
#
# Traffic goes to loopback only. The holder is killed on exit (trap), and
# also stops by itself after BENCH_LIFETIME seconds.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

CONNS="${BENCH_CONNS:-54000}"
PORT="${BENCH_PORT:-47100}"
BYTES="${BENCH_BYTES:-1024}"
RUNS="${BENCH_RUNS:-10}"
WARMUP="${BENCH_WARMUP:-2}"
LIFETIME="${BENCH_LIFETIME:-900}"
READY_TIMEOUT="${BENCH_READY_TIMEOUT:-180}"
MEM_RUNS="${BENCH_MEM_RUNS:-3}"
OUT="${BENCH_OUT:-$HERE/out}"
BIN="$HERE/bin"

# Targets: portwatch median / peer median must be <= these.
TARGET_ALL_JSON=0.5   # ports --all --json  vs ss -tani
TARGET_WHO=0.1        # who PORT            vs ss -tlnp 'sport = :PORT'
TARGET_ALL_PROC=0.3   # ports --all         vs ss -tanp
TARGET_RSS_MB=64      # ports --all --json  maximum resident set size

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

for tool in cc ss lsof hyperfine jq awk; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y hyperfine lsof jq)"
done
[ -x /usr/bin/time ] || die "missing /usr/bin/time (apt-get install -y time)"

# Each connection on loopback is two sockets; the holder spreads them so no
# process needs more than ~18,000 fds. The hard limit here is 20,000.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 19100 ] || die "open-file limit $(ulimit -n) < 19100; lower -a/-c in hold_sockets"

mkdir -p "$BIN" "$OUT"

# ---------------------------------------------------------------- build
log "building hold_sockets"
cc -O2 -Wall -Wextra -o "$BIN/hold_sockets" "$HERE/hold_sockets.c"

if [ -n "${PORTWATCH:-}" ]; then
    PW="$PORTWATCH"
else
    log "building portwatch (release, --scratch-path .build-bench)"
    (cd "$ROOT" && swift build -c release --scratch-path .build-bench --product portwatch) >&2
    PW="$ROOT/.build-bench/release/portwatch"
fi
[ -x "$PW" ] || die "no portwatch binary at $PW"

# ---------------------------------------------------------------- holder
if [ -n "$(ss -tanH "sport = :$PORT")" ]; then
    die "port $PORT already has TCP sockets; set BENCH_PORT"
fi

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

log "holding $CONNS connections on 127.0.0.1:$PORT"
"$BIN/hold_sockets" -p "$PORT" -n "$CONNS" -b "$BYTES" -t "$LIFETIME" >"$HOLDER_LOG" 2>&1 &
HOLDER_PID=$!
deadline=$((SECONDS + READY_TIMEOUT))
until grep -q '^ready ' "$HOLDER_LOG"; do
    kill -0 "$HOLDER_PID" 2>/dev/null || { cat "$HOLDER_LOG" >&2; die "holder exited early"; }
    [ "$SECONDS" -lt "$deadline" ] || { cat "$HOLDER_LOG" >&2; die "holder not ready after ${READY_TIMEOUT}s"; }
    sleep 0.5
done
cat "$HOLDER_LOG" >&2
ss -s >&2

# ---------------------------------------------------------------- agreement
log "agreement: established connections on :$PORT"
SS_EST=$(ss -tanH state established "sport = :$PORT" | wc -l)
PW_EST=$("$PW" ports "$PORT" --json |
    jq --argjson p "$PORT" '[.ports[] | select(.protocol == "tcp" and .port == $p and .role == "local")
                            | .connections.established] | add // 0')
if [ "$SS_EST" -eq "$PW_EST" ] && [ "$SS_EST" -eq "$CONNS" ]; then AGREE=PASS; else AGREE=FAIL; fi
printf 'ss: %s  portwatch: %s  held: %s  -> %s\n' "$SS_EST" "$PW_EST" "$CONNS" "$AGREE" >&2

# ---------------------------------------------------------------- timings
HF=(hyperfine --warmup "$WARMUP" --runs "$RUNS" --shell=none --output=null --style=basic)

log "1/3 portwatch ports --all --json  vs  ss -tani"
"${HF[@]}" --export-json "$OUT/all_json.json" \
    -n "portwatch ports --all --json" "$PW ports --all --json" \
    -n "ss -tani" "ss -tani"

log "2/3 portwatch who $PORT  vs  ss -tlnp  vs  lsof"
"${HF[@]}" --export-json "$OUT/who.json" \
    -n "portwatch who $PORT" "$PW who $PORT" \
    -n "ss -tlnp 'sport = :$PORT'" "ss -tlnp 'sport = :$PORT'" \
    -n "lsof -nP -iTCP:$PORT -sTCP:LISTEN" "lsof -nP -iTCP:$PORT -sTCP:LISTEN"

log "3/3 portwatch ports --all  vs  ss -tanp"
"${HF[@]}" --export-json "$OUT/all_proc.json" \
    -n "portwatch ports --all" "$PW ports --all" \
    -n "ss -tanp" "ss -tanp"

log "peak memory: /usr/bin/time -v portwatch ports --all --json (x$MEM_RUNS, max)"
RSS_KB=0
for _ in $(seq "$MEM_RUNS"); do
    kb=$( { /usr/bin/time -v "$PW" ports --all --json >/dev/null; } 2>&1 |
        awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }')
    [ "$kb" -gt "$RSS_KB" ] && RSS_KB=$kb
done

# ---------------------------------------------------------------- summary
median() { jq -r --arg n "$2" '.results[] | select(.command == $n) | .median' "$1"; }
ms() { awk -v s="$1" 'BEGIN { printf "%.1f ms", s * 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r <= t) ? "PASS" : "FAIL" }'; }

a_pw=$(median "$OUT/all_json.json" "portwatch ports --all --json")
a_ss=$(median "$OUT/all_json.json" "ss -tani")
w_pw=$(median "$OUT/who.json" "portwatch who $PORT")
w_ss=$(median "$OUT/who.json" "ss -tlnp 'sport = :$PORT'")
w_ls=$(median "$OUT/who.json" "lsof -nP -iTCP:$PORT -sTCP:LISTEN")
p_pw=$(median "$OUT/all_proc.json" "portwatch ports --all")
p_ss=$(median "$OUT/all_proc.json" "ss -tanp")

r_a=$(ratio "$a_pw" "$a_ss"); r_w=$(ratio "$w_pw" "$w_ss"); r_wl=$(ratio "$w_pw" "$w_ls"); r_p=$(ratio "$p_pw" "$p_ss")
rss_mb=$(awk -v k="$RSS_KB" 'BEGIN { printf "%.1f", k / 1024 }')

{
    echo "portwatch benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), kernel $(uname -r)"
    echo "connections held: $CONNS established on 127.0.0.1:$PORT ($((2 * CONNS)) sockets), $BYTES B each way"
    echo "hyperfine --warmup $WARMUP --runs $RUNS --shell=none --output=null; medians"
    echo
    echo "| Benchmark | portwatch | peer | ratio (pw/peer) | target | result |"
    echo "|---|---|---|---|---|---|"
    echo "| \`ports --all --json\` vs \`ss -tani\` | $(ms "$a_pw") | $(ms "$a_ss") | $r_a | ≤ $TARGET_ALL_JSON | $(verdict "$r_a" "$TARGET_ALL_JSON") |"
    echo "| \`who $PORT\` vs \`ss -tlnp 'sport = :$PORT'\` | $(ms "$w_pw") | $(ms "$w_ss") | $r_w | ≤ $TARGET_WHO | $(verdict "$r_w" "$TARGET_WHO") |"
    echo "| \`who $PORT\` vs \`lsof -nP -iTCP:$PORT -sTCP:LISTEN\` | $(ms "$w_pw") | $(ms "$w_ls") | $r_wl | (info) | - |"
    echo "| \`ports --all\` vs \`ss -tanp\` | $(ms "$p_pw") | $(ms "$p_ss") | $r_p | ≤ $TARGET_ALL_PROC | $(verdict "$r_p" "$TARGET_ALL_PROC") |"
    echo "| peak RSS \`ports --all --json\` | $rss_mb MB | - | - | ≤ $TARGET_RSS_MB MB | $(verdict "$rss_mb" "$TARGET_RSS_MB") |"
    echo "| established on :$PORT, portwatch = ss | $PW_EST | $SS_EST | - | equal (= $CONNS) | $AGREE |"
} | tee "$OUT/summary.md"
