#!/usr/bin/env bash
# portwatch vs ss/lsof under ~54,000 established loopback TCP connections.
#
#   benchmarks/run.sh                    # full run (54,000 connections)
#   BENCH_CONNS=5000 benchmarks/run.sh   # quick run
#
# Environment (all optional):
#   BENCH_CONNS     established connections to hold        (default 54000)
#   BENCH_PORT      listener port on 127.0.0.1              (default 29417, next free of 10)
#   BENCH_BYTES     bytes each way per connection           (default 1024)
#   BENCH_RUNS      hyperfine --runs                        (default 10)
#   BENCH_WARMUP    hyperfine --warmup                      (default 2)
#   BENCH_LIFETIME  holder exits by itself after N seconds  (default 900)
#   BENCH_READY_TIMEOUT  seconds to wait for "ready"        (default 180)
#   BENCH_MEM_RUNS  /usr/bin/time -v repetitions            (default 3)
#   BENCH_SETTLE    seconds to let the kernel settle after the holder is ready (default 20)
#   BENCH_FLOOR     1 = also time the C floor (bin/floor)   (default 1)
#   PORTWATCH       use this binary and skip the swift build
#   BENCH_OUT       where results go                        (default benchmarks/out)
#
# Traffic goes to loopback only. The holder is killed on exit (trap), and
# also stops by itself after BENCH_LIFETIME seconds.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

CONNS="${BENCH_CONNS:-54000}"
PORT="${BENCH_PORT:-29417}"
BYTES="${BENCH_BYTES:-1024}"
RUNS="${BENCH_RUNS:-10}"
WARMUP="${BENCH_WARMUP:-2}"
LIFETIME="${BENCH_LIFETIME:-900}"
READY_TIMEOUT="${BENCH_READY_TIMEOUT:-180}"
MEM_RUNS="${BENCH_MEM_RUNS:-3}"
FLOOR="${BENCH_FLOOR:-1}"
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
cc -O2 -Wall -Wextra -pthread -o "$BIN/floor" "$HERE/floor.c"

if [ -n "${PORTWATCH:-}" ]; then
    PW="$PORTWATCH"
else
    log "building portwatch (release, --scratch-path .build-bench)"
    (cd "$ROOT" && swift build -c release --scratch-path .build-bench --product portwatch) >&2
    PW="$ROOT/.build-bench/release/portwatch"
fi
[ -x "$PW" ] || die "no portwatch binary at $PW"

# ---------------------------------------------------------------- holder
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

# Starts the holder on port $1 and waits for "ready". Returns 1 when the port cannot be
# bound (someone else has it, or a TIME-WAIT of another program's socket blocks it).
start_holder() {
    local port=$1
    # TIME-WAIT leftovers of other programs are harmless; a listener or connections are not.
    if [ -n "$(ss -tanH "sport = :$port" | grep -v '^TIME-WAIT')" ]; then return 1; fi
    log "holding $CONNS connections on 127.0.0.1:$port"
    "$BIN/hold_sockets" -p "$port" -n "$CONNS" -b "$BYTES" -t "$LIFETIME" >"$HOLDER_LOG" 2>&1 &
    HOLDER_PID=$!
    local deadline=$((SECONDS + READY_TIMEOUT))
    until grep -q '^ready ' "$HOLDER_LOG"; do
        if ! kill -0 "$HOLDER_PID" 2>/dev/null; then
            wait "$HOLDER_PID" 2>/dev/null || true
            HOLDER_PID=""
            cat "$HOLDER_LOG" >&2
            grep -q 'bind listener' "$HOLDER_LOG" && return 1
            die "holder exited early"
        fi
        [ "$SECONDS" -lt "$deadline" ] || { cat "$HOLDER_LOG" >&2; die "holder not ready after ${READY_TIMEOUT}s"; }
        sleep 0.5
    done
}

# The listener port lies below the ephemeral range (32768-60999 here), so no client socket
# of another program can be using it. Without BENCH_PORT, up to 10 ports are tried.
if [ -n "${BENCH_PORT:-}" ]; then
    start_holder "$PORT" || die "port $PORT is in use; pick another BENCH_PORT"
else
    started=0
    for candidate in $(seq "$PORT" $((PORT + 9))); do
        if start_holder "$candidate"; then PORT=$candidate; started=1; break; fi
        printf 'port %s busy, trying the next\n' "$candidate" >&2
    done
    [ "$started" = 1 ] || die "ports $PORT-$((PORT + 9)) all busy; set BENCH_PORT"
fi
cat "$HOLDER_LOG" >&2
ss -s >&2
# Creating 108,000 sockets leaves the kernel busy for a while (memory reclaim, RCU frees):
# timings taken at once are slower for every tool, by a different amount each.
SETTLE=${BENCH_SETTLE:-20}
log "letting the kernel settle for ${SETTLE}s"
sleep "$SETTLE"

# ---------------------------------------------------------------- agreement
log "agreement: established connections on :$PORT"
SS_EST=$(ss -tanH state established "sport = :$PORT" | wc -l)
PW_EST=$("$PW" ports "$PORT" --json |
    jq --argjson p "$PORT" '[.ports[] | select(.protocol == "tcp" and .port == $p and .role == "local")
                            | .connections.established] | add // 0')
if [ "$SS_EST" -eq "$PW_EST" ] && [ "$SS_EST" -eq "$CONNS" ]; then AGREE=PASS; else AGREE=FAIL; fi
printf 'ss: %s  portwatch: %s  held: %s  -> %s\n' "$SS_EST" "$PW_EST" "$CONNS" "$AGREE" >&2

# ---------------------------------------------------------------- timings
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
HF=(hyperfine --warmup "$WARMUP" --runs "$RUNS" --shell=none --output=null --style=basic)

log "1/3 portwatch ports --all --json  vs  ss -tani"
"${HF[@]}" --export-json "$OUT/all_json.json" \
    -n "portwatch ports --all --json" "$PW ports --all --json" \
    -n "ss -tani" "ss -tani" \
    -n "portwatch ports --all --json --no-processes" "$PW ports --all --json --no-processes"

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

if [ "$FLOOR" = 1 ]; then
    log "C floor: sock_diag dump and /proc/*/fd walk in plain C (medians of 5)"
    "$BIN/floor" -r 5 | tee "$OUT/floor.txt" >&2
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- summary
median() { jq -r --arg n "$2" '.results[] | select(.command == $n) | .median' "$1"; }
# Mean CPU time (user + system) per run: less sensitive than wall time to other load.
cpu() { jq -r --arg n "$2" '.results[] | select(.command == $n) | (.user + .system)' "$1"; }
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
a_np=$(median "$OUT/all_json.json" "portwatch ports --all --json --no-processes")
a_pw_c=$(cpu "$OUT/all_json.json" "portwatch ports --all --json"); a_ss_c=$(cpu "$OUT/all_json.json" "ss -tani")
a_np_c=$(cpu "$OUT/all_json.json" "portwatch ports --all --json --no-processes")
w_pw_c=$(cpu "$OUT/who.json" "portwatch who $PORT"); w_ss_c=$(cpu "$OUT/who.json" "ss -tlnp 'sport = :$PORT'")
w_ls_c=$(cpu "$OUT/who.json" "lsof -nP -iTCP:$PORT -sTCP:LISTEN")
p_pw_c=$(cpu "$OUT/all_proc.json" "portwatch ports --all"); p_ss_c=$(cpu "$OUT/all_proc.json" "ss -tanp")

r_a=$(ratio "$a_pw" "$a_ss"); r_w=$(ratio "$w_pw" "$w_ss"); r_wl=$(ratio "$w_pw" "$w_ls"); r_p=$(ratio "$p_pw" "$p_ss")
rss_mb=$(awk -v k="$RSS_KB" 'BEGIN { printf "%.1f", k / 1024 }')

{
    echo "portwatch benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), kernel $(uname -r)"
    echo "connections held: $CONNS established on 127.0.0.1:$PORT ($((2 * CONNS)) sockets), $BYTES B each way"
    echo "hyperfine --warmup $WARMUP --runs $RUNS --shell=none --output=null; wall-time medians;"
    echo "CPU = mean user+system per run; load average before/after: $LOAD_BEFORE / $LOAD_AFTER"
    echo
    echo "| Benchmark | portwatch | peer | ratio (pw/peer) | target | result | CPU pw / peer | CPU ratio |"
    echo "|---|---|---|---|---|---|---|---|"
    echo "| \`ports --all --json\` vs \`ss -tani\` | $(ms "$a_pw") | $(ms "$a_ss") | $r_a | ≤ $TARGET_ALL_JSON | $(verdict "$r_a" "$TARGET_ALL_JSON") | $(ms "$a_pw_c") / $(ms "$a_ss_c") | $(ratio "$a_pw_c" "$a_ss_c") |"
    echo "| \`who $PORT\` vs \`ss -tlnp 'sport = :$PORT'\` | $(ms "$w_pw") | $(ms "$w_ss") | $r_w | ≤ $TARGET_WHO | $(verdict "$r_w" "$TARGET_WHO") | $(ms "$w_pw_c") / $(ms "$w_ss_c") | $(ratio "$w_pw_c" "$w_ss_c") |"
    echo "| \`who $PORT\` vs \`lsof -nP -iTCP:$PORT -sTCP:LISTEN\` | $(ms "$w_pw") | $(ms "$w_ls") | $r_wl | (info) | - | $(ms "$w_pw_c") / $(ms "$w_ls_c") | $(ratio "$w_pw_c" "$w_ls_c") |"
    echo "| \`ports --all\` vs \`ss -tanp\` | $(ms "$p_pw") | $(ms "$p_ss") | $r_p | ≤ $TARGET_ALL_PROC | $(verdict "$r_p" "$TARGET_ALL_PROC") | $(ms "$p_pw_c") / $(ms "$p_ss_c") | $(ratio "$p_pw_c" "$p_ss_c") |"
    echo "| \`ports --all --json --no-processes\` vs \`ss -tani\` | $(ms "$a_np") | $(ms "$a_ss") | $(ratio "$a_np" "$a_ss") | (info) | - | $(ms "$a_np_c") / $(ms "$a_ss_c") | $(ratio "$a_np_c" "$a_ss_c") |"
    echo "| peak RSS \`ports --all --json\` (max of $MEM_RUNS) | $rss_mb MB | - | - | ≤ $TARGET_RSS_MB MB | $(verdict "$rss_mb" "$TARGET_RSS_MB") | | |"
    echo "| established on :$PORT, portwatch = ss | $PW_EST | $SS_EST | - | equal (= $CONNS) | $AGREE | | |"
    if [ -s "$OUT/floor.txt" ]; then
        echo
        echo "C floor (bin/floor, medians of 5):"
        echo
        echo '```'
        cat "$OUT/floor.txt"
        echo '```'
    fi
} | tee "$OUT/summary.md"
