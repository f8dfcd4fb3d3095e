#!/usr/bin/env bash
# Cost of `portwatch daemon --interval 5s` next to Debian's prometheus-node-exporter, on an
# idle host and with ~54,000 established loopback connections (issue 7, "Speed and size").
#
#   benchmarks/daemon.sh                          # full run, ~6 minutes
#   DAEMON_WINDOW=30 BENCH_CONNS=5000 benchmarks/daemon.sh   # quick run (numbers not comparable)
#   PORTWATCH=/path/to/portwatch benchmarks/daemon.sh        # measure a given binary, no build
#
# Both processes run side by side in the same window; each phase starts them afresh so the
# loaded phase's peak RSS is not the idle one's. Mean CPU = (utime+stime) delta of
# /proc/PID/stat over the window, as % of one core; peak RSS = VmHWM of /proc/PID/status.
# node_exporter is scraped every 5 s by a bounded curl loop (an exporter nobody scrapes does
# almost nothing); the daemon samples every 5 s on its own.
#
# Environment (all optional):
#   BENCH_CONNS       connections to hold in the loaded phase   (default 54000)
#   BENCH_PORT        holder's listener port                    (default 29417, next free of 10)
#   BENCH_SETTLE      seconds after the holder is ready         (default 20)
#   DAEMON_WINDOW     measurement window per phase, seconds     (default 120)
#   DAEMON_WARMUP     seconds after start before the window     (default 12: two samples)
#   DAEMON_PHASES     "idle loaded", or one of them             (default both)
#   DAEMON_TOP        1 = also measure `portwatch top --interval 5s --json` (info) (default 1)
#   PORTWATCH         binary to measure; skips the swift build
#   BENCH_OUT         where results go                          (default benchmarks/out)
#
# Exit 0 when every target is met, 1 when one is missed, 2 on a setup failure.
# Traffic stays on loopback. Every process started here is stopped on exit (trap); the holder
# also stops by itself after its lifetime, and the scrape loop after a bounded count.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

CONNS="${BENCH_CONNS:-54000}"
PORT="${BENCH_PORT:-29417}"
SETTLE="${BENCH_SETTLE:-20}"
WINDOW="${DAEMON_WINDOW:-120}"
WARMUP="${DAEMON_WARMUP:-12}"
PHASES="${DAEMON_PHASES:-idle loaded}"
TOP="${DAEMON_TOP:-1}"
OUT="${BENCH_OUT:-$HERE/out}/daemon"
BIN="$HERE/bin"
READY_TIMEOUT=180
# The holder outlives the loaded phase by a margin, never by much more.
LIFETIME=$((SETTLE + WARMUP + WINDOW + 240))

# Targets (issue 7).
IDLE_CPU_PCT=0.3;   IDLE_RSS_MB=40
LOADED_CPU_PCT=3;   LOADED_RSS_MB=80

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'daemon.sh: %s\n' "$*" >&2; exit 2; }

for tool in cc ss curl awk python3 prometheus-node-exporter; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y prometheus-node-exporter curl iproute2)"
done
CLK_TCK=$(getconf CLK_TCK)

ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 19100 ] || die "open-file limit $(ulimit -n) < 19100"

rm -rf "$OUT"
mkdir -p "$BIN" "$OUT"
TMP=$(mktemp -d /tmp/portwatch-daemon-bench.XXXXXX)

# ---------------------------------------------------------------- cleanup
PIDS=()          # every long-running process started here
HOLDER_PID=""
stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    [ -n "$HOLDER_PID" ] && stop_pid "$HOLDER_PID"
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build
cc -O2 -Wall -Wextra -o "$BIN/hold_sockets" "$HERE/hold_sockets.c"
if [ -n "${PORTWATCH:-}" ]; then
    PW="$PORTWATCH"
else
    log "building portwatch (release)"
    (cd "$ROOT" && swift build -c release --product portwatch) >&2
    PW="$ROOT/.build/release/portwatch"
fi
[ -x "$PW" ] || die "no portwatch binary at $PW"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# CPU ticks (utime+stime) of a process; fields counted after the ")" that ends comm.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# ---------------------------------------------------------------- one phase
# measure NAME: starts both processes, waits WARMUP, measures WINDOW, stops both.
# Appends "phase proc cpu_pct rss_mb" lines to $OUT/results.
measure() {
    local phase=$1
    local db="$TMP/$phase.sqlite"
    local ne_port; ne_port=$(free_port)

    log "$phase: starting portwatch daemon and node_exporter (127.0.0.1:$ne_port)"
    PORTWATCH_LOG_LEVEL=debug "$PW" daemon --interval 5s --db "$db" \
        >"$OUT/$phase-daemon.log" 2>&1 &
    local pw_pid=$!; PIDS+=("$pw_pid")
    # Only the default collectors; the textfile directory does not exist here.
    prometheus-node-exporter --web.listen-address="127.0.0.1:$ne_port" \
        --no-collector.textfile >"$OUT/$phase-node-exporter.log" 2>&1 &
    local ne_pid=$!; PIDS+=("$ne_pid")

    # Scrape node_exporter every 5 s, as Prometheus would; bounded by count and per request.
    local scrapes=$(( (WARMUP + WINDOW) / 5 + 4 ))
    ( for _ in $(seq "$scrapes"); do
          curl -s -m 4 -o /dev/null "http://127.0.0.1:$ne_port/metrics" || true
          sleep 5
      done ) &
    local scrape_pid=$!; PIDS+=("$scrape_pid")

    # For information: `top` at the same interval runs the same Sampler without the daemon's
    # kernel-side filter (it dumps every socket, outgoing rows included) and renders JSON.
    local names=(portwatch node_exporter) pids=("$pw_pid" "$ne_pid")
    if [ "$TOP" = 1 ]; then
        "$PW" top --interval 5s --json --iterations $(( (WARMUP + WINDOW) / 5 + 6 )) \
            >"$OUT/$phase-top.jsonl" 2>"$OUT/$phase-top.err" &
        PIDS+=("$!"); names+=(top); pids+=("$!")
    fi

    sleep "$WARMUP"
    local i
    for i in "${!pids[@]}"; do
        kill -0 "${pids[$i]}" 2>/dev/null || { tail -5 "$OUT/$phase"-* >&2; die "$phase: ${names[$i]} exited early"; }
    done
    local c0=() c1=() hwm=() t0 t1
    for i in "${!pids[@]}"; do c0[$i]=$(cpu_ticks "${pids[$i]}"); done
    t0=$(date +%s.%N)
    sleep "$WINDOW"
    for i in "${!pids[@]}"; do c1[$i]=$(cpu_ticks "${pids[$i]}"); hwm[$i]=$(hwm_kb "${pids[$i]}"); done
    t1=$(date +%s.%N)
    local est; est=$(ss -tanH state established | wc -l)

    stop_pid "$scrape_pid"
    for i in "${!pids[@]}"; do
        stop_pid "${pids[$i]}"
        awk -v p="$phase" -v n="${names[$i]}" -v a0="${c0[$i]}" -v a1="${c1[$i]}" -v t0="$t0" -v t1="$t1" \
            -v hz="$CLK_TCK" -v h="${hwm[$i]}" -v est="$est" 'BEGIN {
            w = t1 - t0
            printf "%s %s %.3f %.1f %d %.1f\n", p, n, 100 * (a1 - a0) / hz / w, h / 1024, est, w
        }' >>"$OUT/results"
    done
    # The daemon logs each sample's duration at debug level.
    grep -o 'took [0-9.]*[mµu]*s' "$OUT/$phase-daemon.log" >"$OUT/$phase-sample-times" || true
}

# ---------------------------------------------------------------- holder
start_holder() {
    local port=$1
    if [ -n "$(ss -tanH "sport = :$port" | grep -v '^TIME-WAIT')" ]; then return 1; fi
    log "holding $CONNS connections on 127.0.0.1:$port"
    "$BIN/hold_sockets" -p "$port" -n "$CONNS" -t "$LIFETIME" >"$OUT/holder.log" 2>&1 &
    HOLDER_PID=$!
    local deadline=$((SECONDS + READY_TIMEOUT))
    until grep -q '^ready ' "$OUT/holder.log"; do
        if ! kill -0 "$HOLDER_PID" 2>/dev/null; then
            wait "$HOLDER_PID" 2>/dev/null || true
            HOLDER_PID=""
            grep -q 'bind listener' "$OUT/holder.log" && return 1
            cat "$OUT/holder.log" >&2; die "holder exited early"
        fi
        [ "$SECONDS" -lt "$deadline" ] || { cat "$OUT/holder.log" >&2; die "holder not ready after ${READY_TIMEOUT}s"; }
        sleep 0.5
    done
}

LOAD_BEFORE=$(uptime)
log "uptime before: $LOAD_BEFORE"
: >"$OUT/results"

for phase in $PHASES; do
    case "$phase" in
    idle)
        measure idle ;;
    loaded)
        started=0
        for candidate in $(seq "$PORT" $((PORT + 9))); do
            if start_holder "$candidate"; then PORT=$candidate; started=1; break; fi
        done
        [ "$started" = 1 ] || die "ports $PORT-$((PORT + 9)) all busy; set BENCH_PORT"
        log "holder ready; letting the kernel settle for ${SETTLE}s"
        sleep "$SETTLE"
        measure loaded
        stop_pid "$HOLDER_PID"; HOLDER_PID="" ;;
    *) die "unknown phase $phase" ;;
    esac
done
LOAD_AFTER=$(uptime)
log "uptime after: $LOAD_AFTER"

# ---------------------------------------------------------------- summary
median_ms() {
    # "took 12.3ms" / "took 0.2s" / "took 850us" -> median in ms (mawk has no asort: sort(1))
    sed -E 's/took //' "$1" | awk '
        /ms$/ { sub(/ms$/, ""); print $0 + 0; next }
        /(µs|us)$/ { sub(/(µs|us)$/, ""); print $0 / 1000; next }
        /ns$/ { next }
        /s$/ { sub(/s$/, ""); print $0 * 1000 }' | sort -g | awk '
        { v[++n] = $1 }
        END { if (n == 0) { print "-"; exit }
              printf "%.1f ms (%d samples)", (n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2), n }'
}

fail=0
{
    echo "## Daemon cost: portwatch daemon --interval 5s vs prometheus-node-exporter"
    echo
    echo "window ${WINDOW}s per phase after ${WARMUP}s warm-up; CPU = % of one core; RSS = VmHWM"
    echo
    echo "| Phase | ESTAB sockets | Process | mean CPU | peak RSS | target CPU / RSS | result | median sample |"
    echo "|---|---|---|---|---|---|---|---|"
    while read -r phase proc cpu rss est _; do
        if [ "$proc" = portwatch ]; then
            if [ "$phase" = idle ]; then tc=$IDLE_CPU_PCT; tr=$IDLE_RSS_MB; else tc=$LOADED_CPU_PCT; tr=$LOADED_RSS_MB; fi
            if awk -v c="$cpu" -v r="$rss" -v tc="$tc" -v tr="$tr" 'BEGIN { exit !(c <= tc && r <= tr) }'; then
                res=PASS; else res=FAIL; fail=1; fi
            took=$(median_ms "$OUT/$phase-sample-times")
            echo "| $phase | $est | portwatch daemon | ${cpu} % | ${rss} MB | ≤ ${tc} % / ≤ ${tr} MB | **$res** | $took |"
        elif [ "$proc" = top ]; then
            took=$(jq -r '.sample_seconds // empty' "$OUT/$phase-top.jsonl" 2>/dev/null | tail -n +2 |
                   awk '{ printf "took %.3fms\n", $1 * 1000 }' >"$OUT/$phase-top-times"; median_ms "$OUT/$phase-top-times")
            echo "| $phase | $est | (info) portwatch top --interval 5s --json | ${cpu} % | ${rss} MB | – | – | $took |"
        else
            echo "| $phase | $est | node_exporter (no per-port numbers) | ${cpu} % | ${rss} MB | (peer) | – | – |"
        fi
    done <"$OUT/results"
    echo
    echo "| Ratio | CPU | RSS |"
    echo "|---|---|---|"
    awk '{ c[$1 " " $2] = $3; r[$1 " " $2] = $4; ph[$1] = 1 }
        function rt(a, b) { return b > 0 ? sprintf("%.2f×", a / b) : "–" }
        END {
            for (p in ph) printf "| %s: portwatch / node_exporter | %s | %s |\n", p,
                rt(c[p " portwatch"], c[p " node_exporter"]), rt(r[p " portwatch"], r[p " node_exporter"])
            if (("idle portwatch") in c && ("loaded portwatch") in c)
                printf "| portwatch loaded / idle | %s | %s |\n",
                    rt(c["loaded portwatch"], c["idle portwatch"]), rt(r["loaded portwatch"], r["idle portwatch"])
        }' "$OUT/results"
    echo
    echo "node_exporter gives no per-port numbers at all (no connections, bytes or owner per port);"
    echo "its figures are the cost of a host exporter scraped every 5 s, for scale."
    echo
    echo "uptime before: $LOAD_BEFORE"
    echo "uptime after:  $LOAD_AFTER"
    echo "binary: $PW"
} | tee "$OUT/summary.md"

exit "$fail"
