#!/usr/bin/env bash
# portwatch under traffic (issue 3): accounting cost next to iptraf-ng at >= 10 Gbit/s,
# one `top` sample at 54,000 and 108,000 sockets, packet capture at ~100,000 packets/s.
#
#   benchmarks/traffic.sh            # all three parts, ~3 minutes on 2 cores
#   benchmarks/traffic.sh 1 3        # only parts 1 and 3
#   TRAFFIC_CONNS="27000" benchmarks/traffic.sh 2
#
# Parts:
#   1  iperf3 TCP over loopback (TRAFFIC_TCP_SECONDS, default 20 s). Over the same ~10 s window:
#      CPU of `portwatch top --interval 1s --json --iterations 10` (all ports: the target) and
#      `portwatch top PORT ...` (info), and of `iptraf-ng -s lo` (TCP/UDP service monitor).
#      Byte totals of the iperf3 port over the whole transfer: portwatch `ports PORT --sample`,
#      iptraf-ng's log, iperf3 -J; again for a short transfer at TRAFFIC_CHECK_RATE (2 Gbit/s).
#   2  bin/hold_sockets holds N connections (2N sockets) for each N in TRAFFIC_CONNS
#      (default "27000 54000"); `portwatch top --interval 1s --iterations 6 --json`: median
#      `sample_seconds` of lines 2-6; `ss -tani` timed by hyperfine right after.
#   3  iperf3 UDP, 64-byte datagrams at TRAFFIC_UDP_PPS (default 100,000/s):
#      a) CPU of `portwatch ports PORT/udp --sample 8s --capture --json` inside 10 s of load,
#         packets counted vs sent, capture_kernel_drops;
#      b) the same window around a 6 s burst, so every sent datagram lies inside it: exact count.
#
# Environment (all optional):
#   TRAFFIC_TCP_PORT      iperf3 TCP port (default 947: iptraf-ng's service monitor only
#                         counts ports below 1024 unless more are configured)
#   TRAFFIC_TCP_SECONDS   iperf3 -t for part 1 (default 20)
#   TRAFFIC_TOP_ITER      top --iterations in part 1 (default 10)
#   TRAFFIC_CHECK_RATE    iperf3 -b of part 1's second, slower transfer (default 2G), where
#   TRAFFIC_CHECK_SECONDS iptraf-ng keeps up and its byte count can be checked (default 5 s)
#   TRAFFIC_CONNS         connection counts for part 2 (default "27000 54000")
#   TRAFFIC_HOLD_PORT     hold_sockets listener port (default 29437, next free of 10)
#   TRAFFIC_UDP_PORT      iperf3 UDP port (default 29519; below the ephemeral range)
#   TRAFFIC_UDP_PPS       datagrams per second for part 3 (default 100000)
#   TRAFFIC_PERF          1 = also `perf record -g` one extra portwatch run per part (not timed)
#   TRAFFIC_QUIET_WAIT    seconds to wait for other programs' sockets to go away (default 300)
#   PORTWATCH             use this binary and skip the swift build
#   TRAFFIC_OUT           where results go (default benchmarks/out/traffic)
#
# Traffic goes to 127.0.0.1 only. Every load is bounded (iperf3 -t, `timeout`, hold_sockets -t,
# iptraf-ng -t) and everything started here is killed on exit (trap).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"

TCP_PORT="${TRAFFIC_TCP_PORT:-947}"
TCP_SECONDS="${TRAFFIC_TCP_SECONDS:-20}"
TOP_ITER="${TRAFFIC_TOP_ITER:-10}"
CHECK_RATE="${TRAFFIC_CHECK_RATE:-2G}"
CHECK_SECONDS="${TRAFFIC_CHECK_SECONDS:-5}"
CONNS_LIST="${TRAFFIC_CONNS:-27000 54000}"
HOLD_PORT="${TRAFFIC_HOLD_PORT:-29437}"
UDP_PORT="${TRAFFIC_UDP_PORT:-29519}"
UDP_PPS="${TRAFFIC_UDP_PPS:-100000}"
PERF="${TRAFFIC_PERF:-0}"
QUIET_WAIT="${TRAFFIC_QUIET_WAIT:-300}"
OUT="${TRAFFIC_OUT:-$HERE/out/traffic}"
BIN="$HERE/bin"
PARTS="${*:-1 2 3}"

# Targets
TARGET_TOP_CPU=2       # part 1: portwatch top, % of one core under >= 10 Gbit/s
TARGET_MIN_GBPS=10     # part 1: the load must reach this
TARGET_SAMPLE_MS=100   # part 2: median sample_seconds at 54,000 sockets
TARGET_SAMPLE_FLOOR=1.3  # part 2: median sample / the C floor's dump-tcp (tcp_info + meminfo), 108,000 sockets
TARGET_CAPTURE_CPU=15  # part 3: % of one core, and capture_kernel_drops == 0

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'traffic.sh: %s\n' "$*" >&2; exit 1; }

for tool in cc ss iperf3 iptraf-ng hyperfine jq awk; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y iperf3 iptraf-ng hyperfine jq time)"
done
[ -x /usr/bin/time ] || die "missing /usr/bin/time (apt-get install -y time)"
[ "$PERF" = 0 ] || command -v perf >/dev/null || die "TRAFFIC_PERF=1 needs perf (apt-get install -y linux-perf)"
[ "$(id -u)" = 0 ] || die "needs root: iptraf-ng and --capture open AF_PACKET sockets"

ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mkdir -p "$BIN" "$OUT"
HZ=$(getconf CLK_TCK)

# ---------------------------------------------------------------- cleanup
PIDS=()          # background processes started here (killed on exit)
T0=0 T1=0 K0=0 K1=0   # part 1 CPU window: times and iptraf-ng ticks
IPTRAF_PID=""    # iptraf-ng daemonizes itself: found by its log path, stopped with SIGUSR2
HOLDER_PID=""
alive() { [ -n "$1" ] && [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
stop_pid() {   # stop_pid PID [SIGNAL]: signal, wait up to 5 s, then SIGKILL
    local pid=$1 sig=${2:-TERM}
    alive "$pid" || return 0
    # Wrappers (/usr/bin/time, timeout) first: timeout passes SIGTERM on to its command.
    [ "$sig" = TERM ] && pkill -TERM -P "$pid" 2>/dev/null || true
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    set +e
    [ -n "$IPTRAF_PID" ] && stop_pid "$IPTRAF_PID" USR2
    [ -n "$HOLDER_PID" ] && stop_pid "$HOLDER_PID"
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bg() { "$@" & PIDS+=("$!"); LAST=$!; }   # start in background, remember the pid in $LAST

# ---------------------------------------------------------------- helpers
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v <= t) ? "PASS" : "FAIL" }'; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }   # utime + stime of a live process
now() { date +%s.%N; }
# /usr/bin/time -f '%e %U %S %M' output -> "wall cpu maxrss_kb"
timefile() { awk 'NF == 4 && $1 ~ /^[0-9.]+$/ { printf "%s %.3f %s\n", $1, $2 + $3, $4 }' "$1" | tail -1; }
tcp_busy() { [ -n "$(ss -tanH "sport = :$1" | grep -v '^TIME-WAIT')" ]; }
udp_busy() { [ -n "$(ss -uanH "sport = :$1")" ]; }
foreign_sockets() { ss -s | awk '/^TCP:/ { sub(/,/, "", $4); print $4 }'; }   # established

# Waits (up to QUIET_WAIT s) while other programs hold many TCP sockets: another benchmark's
# 108,000 sockets make every portwatch dump on the machine ~10x more expensive.
wait_quiet() {
    local deadline=$((SECONDS + QUIET_WAIT)) n
    while n=$(foreign_sockets); [ "$n" -gt 2000 ]; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            printf 'warning: %s TCP sockets held by other programs; measuring anyway\n' "$n" >&2
            return 0
        fi
        printf 'waiting: %s established TCP sockets held by other programs (ss -s)\n' "$n" >&2
        sleep 10
    done
}

# ---------------------------------------------------------------- build
log "building hold_sockets"
cc -O2 -Wall -Wextra -o "$BIN/hold_sockets" "$HERE/hold_sockets.c"
cc -O2 -Wall -Wextra -pthread -o "$BIN/floor" "$HERE/floor.c"

if [ -n "${PORTWATCH:-}" ]; then
    SRC_PW="$PORTWATCH"
    REV="(PORTWATCH=$PORTWATCH)"
else
    log "building portwatch (release, --scratch-path .build-bench)"
    (cd "$ROOT" && swift build -c release --scratch-path .build-bench --product portwatch) >&2
    SRC_PW="$ROOT/.build-bench/release/portwatch"
    REV="$(cd "$ROOT" && git rev-parse --short HEAD)"
    dirty=$(cd "$ROOT" && git status --porcelain --untracked-files=no -- Sources Package.swift | wc -l)
    [ "$dirty" -gt 0 ] && REV="$REV + $dirty uncommitted file(s) in Sources/"
fi
[ -x "$SRC_PW" ] || die "no portwatch binary at $SRC_PW"
# Others rebuild .build-bench while this runs: time a private copy.
PW="$OUT/portwatch"
cp "$SRC_PW" "$PW.tmp" && mv "$PW.tmp" "$PW"

SUMMARY="$OUT/summary.md"
ROWS="$OUT/rows.md"
: >"$ROWS"
row() { printf '%s\n' "$*" >>"$ROWS"; }
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# ================================================================ part 1
# Starts iptraf-ng's TCP/UDP service monitor on lo, logging to $1; sets IPTRAF_PID.
# It forks into the background (-B) and stops by itself after -t minutes.
start_iptraf() {
    local iplog=$1 minutes=$2
    IPTRAF_PID=""
    TERM=xterm iptraf-ng -s lo -B -L "$iplog" -t "$minutes" </dev/null >/dev/null 2>&1 || true
    for _ in $(seq 50); do
        for p in $(pgrep -x iptraf-ng || true); do
            tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$iplog" && alive "$p" && IPTRAF_PID=$p
        done
        [ -n "$IPTRAF_PID" ] && return 0
        sleep 0.1
    done
    die "iptraf-ng did not start (a stale lock? 'iptraf-ng -f' clears them)"
}

# bytes_table DIR LABEL: the byte/packet totals of the iperf3 port from iperf3 -J
# (DIR/iperf3-client.json), portwatch (DIR/ports-sample.json) and iptraf-ng (DIR/iptraf.log).
bytes_table() {
    local d=$1 label=$2
    local cli_sent srv_recv pw_rx pw_rxp pw_tx pw_txp ip_line ip_in ip_inp ip_out ip_outp exp_in exp_out
    cli_sent=$(jq '.end.sum_sent.bytes' "$d/iperf3-client.json")
    srv_recv=$(jq '.end.sum_received.bytes' "$d/iperf3-client.json")
    read -r pw_rx pw_rxp pw_tx pw_txp < <(jq -r --argjson p "$TCP_PORT" \
        '[.ports[] | select(.protocol == "tcp" and .port == $p and .role == "local") | .window][0]
         | "\(.bytes.received) \(.packets.received) \(.bytes.sent) \(.packets.sent)"' "$d/ports-sample.json")
    ip_line=$(grep "^TCP/$TCP_PORT:" "$d/iptraf.log" | tail -1 || true)
    [ -n "$ip_line" ] || ip_line="TCP/$TCP_PORT: 0 packets, 0 bytes total; 0 packets, 0 bytes incoming; 0 packets, 0 bytes outgoing"
    # "TCP/947: P packets, B bytes total, R; P packets, B bytes incoming, R; P packets, B bytes outgoing, R"
    read -r ip_inp ip_in ip_outp ip_out < <(printf '%s\n' "$ip_line" | awk -F';' '{
        split($2, a, " "); split($3, b, " "); printf "%.0f %.0f %.0f %.0f\n", a[1], a[3], b[1], b[3] }')
    # What the IP layer carried, one copy per packet: payload + 20 B IPv4 + 32 B TCP with
    # timestamps per segment, from portwatch's payload bytes and segment counts.
    exp_in=$(calc '%.0f' "$pw_rx + 52 * $pw_rxp")
    exp_out=$(calc '%.0f' "$pw_tx + 52 * $pw_txp")
    {
        echo "$label"
        echo
        echo "| Count | received by :$TCP_PORT | packets | sent by :$TCP_PORT | packets |"
        echo "|---|---|---|---|---|"
        echo "| iperf3 -J: client sum_sent / server sum_received (data stream, payload) | $cli_sent / $srv_recv | | | |"
        echo "| portwatch window (payload, every connection on the port incl. iperf3's control connection) | $pw_rx | $pw_rxp | $pw_tx | $pw_txp |"
        echo "| iptraf-ng log (IP total length incl. headers, both AF_PACKET copies on lo) | $ip_in | $ip_inp | $ip_out | $ip_outp |"
        echo "| iptraf-ng ÷ 2 (one copy per packet) | $(calc '%.0f' "$ip_in / 2") | $(calc '%.0f' "$ip_inp / 2") | $(calc '%.0f' "$ip_out / 2") | $(calc '%.0f' "$ip_outp / 2") |"
        echo "| portwatch payload + 52 B × segments (expected IP bytes, one copy) | $exp_in | | $exp_out | |"
        echo
        echo "Ratios (received by the port): portwatch / iperf3 client's sum_sent = $(calc '%.6f' "$pw_rx / $cli_sent")" \
             "(difference $(calc '%.0f' "$pw_rx - $cli_sent") B: the payload of iperf3's control connection);" \
             "iptraf-ng / portwatch = $(calc '%.4f' "$ip_in / $pw_rx") raw, $(calc '%.4f' "$ip_in / 2 / $pw_rx") per copy;" \
             "iptraf-ng ÷ 2 / expected IP bytes = $(calc '%.4f' "$ip_in / 2 / $exp_in") (difference $(calc '%.0f' "$ip_in / 2 - $exp_in") B);" \
             "iptraf-ng ÷ 2 / portwatch segments = $(calc '%.4f' "$ip_inp / 2 / $pw_rxp")." \
             "Sent by the port (ACKs): iptraf-ng ÷ 2 / expected = $(calc '%.4f' "$ip_out / 2 / ($exp_out > 0 ? $exp_out : 1)")" \
             "(difference $(calc '%.0f' "$ip_out / 2 - $exp_out") B)."
        echo
    } >>"$ROWS"
}

# One iperf3 TCP transfer with iptraf-ng and `ports --sample` around it.
# transfer DIR SECONDS RATE(0 = unlimited) CPU_WINDOW(0/1)
transfer() {
    local d=$1 secs=$2 rate=$3 cpuwin=$4
    mkdir -p "$d"; rm -f "$d"/*
    bg timeout $((secs + 60)) iperf3 -s -p "$TCP_PORT" -1 -J >"$d/iperf3-server.json" 2>"$d/iperf3-server.err"
    local srv=$LAST
    sleep 0.5
    start_iptraf "$d/iptraf.log" $(( (secs + 119) / 60 + 1 ))
    printf 'iptraf-ng pid %s, log %s\n' "$IPTRAF_PID" "$d/iptraf.log" >&2

    # Byte totals: a window that encloses the whole transfer (and iperf3's control connection).
    bg /usr/bin/time -f '%e %U %S %M' -o "$d/ports-sample.time" \
        timeout $((secs + 30)) "$PW" ports "$TCP_PORT" --sample "$((secs + 6))s" --json \
        >"$d/ports-sample.json" 2>"$d/ports-sample.err"
    local sampler=$LAST
    sleep 1.5

    bg timeout $((secs + 30)) iperf3 -c 127.0.0.1 -p "$TCP_PORT" -t "$secs" -b "$rate" -J >"$d/iperf3-client.json" 2>"$d/iperf3-client.err"
    local cli=$LAST

    if [ "$cpuwin" = 1 ]; then
        sleep 3   # slow start, iptraf-ng's first allocations
        # The CPU window: both top runs and iptraf-ng over the same ~TOP_ITER seconds.
        local topp
        T0=$(now); K0=$(ticks "$IPTRAF_PID")
        bg /usr/bin/time -f '%e %U %S %M' -o "$d/top-port.time" \
            timeout $((TOP_ITER + 30)) "$PW" top "$TCP_PORT" --interval 1s --iterations "$TOP_ITER" --json \
            >"$d/top-port.jsonl" 2>"$d/top-port.err"
        topp=$LAST
        /usr/bin/time -f '%e %U %S %M' -o "$d/top-all.time" \
            timeout $((TOP_ITER + 30)) "$PW" top --interval 1s --iterations "$TOP_ITER" --json \
            >"$d/top-all.jsonl" 2>"$d/top-all.err" || true
        T1=$(now); K1=$(ticks "$IPTRAF_PID")
        wait "$topp" || true
    fi

    wait "$cli" || die "iperf3 client failed: $(cat "$d/iperf3-client.err")"
    wait "$srv" || true
    wait "$sampler" || true
    sleep 1
    ss -0 -m -p 2>/dev/null | grep -A1 iptraf >"$d/iptraf-socket.txt" || true
    stop_pid "$IPTRAF_PID" USR2   # writes the per-port totals to the log as it exits
    IPTRAF_PID=""
}

part1() {
    log "part 1: iperf3 TCP on 127.0.0.1:$TCP_PORT for ${TCP_SECONDS}s; portwatch top vs iptraf-ng -s lo"
    tcp_busy "$TCP_PORT" && die "TCP port $TCP_PORT is in use; set TRAFFIC_TCP_PORT (below 1024 for iptraf-ng)"
    for p in $(pgrep -x iptraf-ng || true); do
        tr '\0' ' ' <"/proc/$p/cmdline" | grep -q -- '-s lo' && die "an iptraf-ng TCP/UDP monitor on lo is already running (pid $p)"
    done
    wait_quiet
    local d="$OUT/p1" c="$OUT/p1-check"
    transfer "$d" "$TCP_SECONDS" 0 1

    log "part 1 (check): iperf3 -b $CHECK_RATE for ${CHECK_SECONDS}s, where iptraf-ng keeps up"
    transfer "$c" "$CHECK_SECONDS" "$CHECK_RATE" 0

    if [ "$PERF" = 1 ]; then
        log "part 1 (perf, not timed): perf record -g portwatch top during iperf3 -t 8"
        bg timeout 40 iperf3 -s -p "$TCP_PORT" -1 >/dev/null 2>&1; local s2=$LAST; sleep 0.5
        bg timeout 30 iperf3 -c 127.0.0.1 -p "$TCP_PORT" -t 8 >/dev/null 2>&1; local c2=$LAST; sleep 1
        perf record -q -g -o "$d/perf-top.data" -- "$PW" top --interval 1s --iterations 5 --json >/dev/null 2>&1 || true
        wait "$c2" || true; wait "$s2" || true
        perf report -i "$d/perf-top.data" --stdio --no-children --percent-limit 2 >"$d/perf-top.txt" 2>/dev/null || true
    fi

    # ---- numbers
    local win ip_cpu ip_share a_cpu a_wall a_share p_cpu p_wall p_share gbps a_med p_med a_lines rx_med
    win=$(calc '%.3f' "$T1 - $T0")
    ip_cpu=$(calc '%.3f' "($K1 - $K0) / $HZ")
    ip_share=$(calc '%.1f' "100 * $ip_cpu / $win")
    read -r a_wall a_cpu _ < <(timefile "$d/top-all.time")
    read -r p_wall p_cpu _ < <(timefile "$d/top-port.time")
    a_share=$(calc '%.2f' "100 * $a_cpu / $a_wall")
    p_share=$(calc '%.2f' "100 * $p_cpu / $p_wall")
    gbps=$(jq '.end.sum_received.bits_per_second / 1e9' "$d/iperf3-client.json")
    a_lines=$(wc -l <"$d/top-all.jsonl")
    a_med=$(tail -n +2 "$d/top-all.jsonl" | jq '.sample_seconds * 1000' | median)
    p_med=$(tail -n +2 "$d/top-port.jsonl" | jq '.sample_seconds * 1000' | median)
    rx_med=$(tail -n +2 "$d/top-all.jsonl" | jq --argjson p "$TCP_PORT" \
        '[.ports[] | select(.protocol == "tcp" and .port == $p and .role == "local") | .rates.received_bps] | add // 0 | . / 1e9' | median)

    {
        echo "### Part 1: accounting cost under iperf3 TCP (127.0.0.1:$TCP_PORT, ${TCP_SECONDS} s, $(calc '%.1f' "$gbps") Gbit/s)"
        echo
        echo "CPU over the same window ($win s of iptraf-ng; each top's own lifetime), share of one core:"
        echo
        echo "| Process | CPU | wall | share of one core | target | result |"
        echo "|---|---|---|---|---|---|"
        echo "| \`portwatch top --interval 1s --json --iterations $TOP_ITER\` (all ports) | $a_cpu s | $a_wall s | $a_share % | ≤ $TARGET_TOP_CPU % | $(verdict "$a_share" "$TARGET_TOP_CPU") |"
        echo "| \`portwatch top $TCP_PORT --interval 1s --json --iterations $TOP_ITER\` | $p_cpu s | $p_wall s | $p_share % | (info) | – |"
        echo "| \`iptraf-ng -s lo -B\` (TCP/UDP service monitor) | $ip_cpu s | $win s | $ip_share % | (peer) | – |"
        echo "| ratio iptraf-ng / portwatch top (all ports) | | | $(calc '%.0f' "$ip_share / ($a_share > 0 ? $a_share : 0.01)")× | | |"
        echo "| iperf3 throughput (receiver, whole run) | | | $(calc '%.2f' "$gbps") Gbit/s | ≥ $TARGET_MIN_GBPS Gbit/s | $(awk -v g="$gbps" -v t="$TARGET_MIN_GBPS" 'BEGIN { print (g >= t) ? "PASS" : "FAIL" }') |"
        echo
        echo "top (all ports): $a_lines lines, median sample_seconds (lines 2–$a_lines) $(calc '%.1f' "$a_med") ms;" \
             "top $TCP_PORT: $(calc '%.1f' "$p_med") ms. Median rate of port $TCP_PORT in top: $(calc '%.2f' "$rx_med") Gbit/s received."
        echo
        echo "iptraf-ng's packet socket after the transfer (\`ss -0 -m -p\`; skmem d = drops):" \
             '`'"$(tr '\n\t' '  ' <"$d/iptraf-socket.txt" | tr -s ' ' | sed 's/ *$//')"'`'
        echo
    } >>"$ROWS"
    bytes_table "$d" "Bytes to and from port $TCP_PORT over the whole ${TCP_SECONDS} s transfer (portwatch: \`ports $TCP_PORT --sample $((TCP_SECONDS + 6))s --json\`, its window around the transfer; iptraf-ng started before and stopped after it):"
    bytes_table "$c" "The same for a ${CHECK_SECONDS} s transfer at \`iperf3 -b $CHECK_RATE\`, where iptraf-ng keeps up (\`ports $TCP_PORT --sample $((CHECK_SECONDS + 6))s\`):"
}

# ================================================================ part 2
start_holder() {   # start_holder CONNS PORT LOGFILE; 1 = port busy
    local n=$1 port=$2 hlog=$3
    tcp_busy "$port" && return 1
    "$BIN/hold_sockets" -p "$port" -n "$n" -b 1024 -t 600 >"$hlog" 2>&1 &
    HOLDER_PID=$!
    local deadline=$((SECONDS + 180))
    until grep -q '^ready ' "$hlog"; do
        if ! kill -0 "$HOLDER_PID" 2>/dev/null; then
            wait "$HOLDER_PID" 2>/dev/null || true
            HOLDER_PID=""
            grep -q 'bind listener' "$hlog" && return 1
            cat "$hlog" >&2; die "holder exited early"
        fi
        [ "$SECONDS" -lt "$deadline" ] || { cat "$hlog" >&2; die "holder not ready after 180s"; }
        sleep 0.5
    done
}

part2() {
    local d="$OUT/p2" n port started
    mkdir -p "$d"; rm -f "$d"/*
    {
        echo "### Part 2: one \`top\` sample with many sockets"
        echo
        echo "\`portwatch top --interval 1s --iterations 6 --json\`, median of \`sample_seconds\` on lines 2–6; \`ss -tani\` right after (hyperfine --warmup 1 --runs 5, median); the C floor's \`dump-tcp\` (\`bin/floor -m dump-tcp -r 7\`, median) after that:"
        echo
        echo "| Connections held (sockets) | \`ss -s\` estab | sample_seconds lines 2–6 | median | target | result | top CPU / wall | \`ss -tani\` median | sample / ss | floor \`dump-tcp\` | sample / floor | target | result |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    } >>"$ROWS"
    for n in $CONNS_LIST; do
        wait_quiet
        log "part 2: holding $n connections ($((2 * n)) sockets)"
        started=0
        for port in $(seq "$HOLD_PORT" $((HOLD_PORT + 9))); do
            if start_holder "$n" "$port" "$d/holder-$n.log"; then started=1; break; fi
        done
        [ "$started" = 1 ] || die "ports $HOLD_PORT-$((HOLD_PORT + 9)) busy"
        local tcp_total
        tcp_total=$(foreign_sockets)
        sleep 1
        /usr/bin/time -f '%e %U %S %M' -o "$d/top-$n.time" \
            timeout 60 "$PW" top --interval 1s --iterations 6 --json >"$d/top-$n.jsonl" 2>"$d/top-$n.err" || true
        hyperfine --warmup 1 --runs 5 --shell=none --output=null --style=basic \
            --export-json "$d/ss-$n.json" -n "ss -tani" "ss -tani" >&2
        "$BIN/floor" -m dump-tcp -r 7 >"$d/floor-$n.txt"
        if [ "$PERF" = 1 ]; then
            log "part 2 (perf, not timed): perf record -g portwatch top at $n connections"
            perf record -q -g -o "$d/perf-top-$n.data" -- "$PW" top --interval 1s --iterations 4 --json >/dev/null 2>&1 || true
            perf report -i "$d/perf-top-$n.data" --stdio --no-children --percent-limit 1 >"$d/perf-top-$n.txt" 2>/dev/null || true
        fi
        stop_pid "$HOLDER_PID"; HOLDER_PID=""
        sleep 2

        local list med wall cpu ssm target res floor ftarget fres
        list=$(tail -n +2 "$d/top-$n.jsonl" | jq -r '.sample_seconds * 1000 | . * 10 | round / 10' | paste -sd' ')
        med=$(tail -n +2 "$d/top-$n.jsonl" | jq '.sample_seconds * 1000' | median)
        read -r wall cpu _ < <(timefile "$d/top-$n.time")
        ssm=$(jq '.results[0].median * 1000' "$d/ss-$n.json")
        if [ "$n" -eq 27000 ]; then target="≤ $TARGET_SAMPLE_MS ms"; res=$(verdict "$med" "$TARGET_SAMPLE_MS"); else target="(info)"; res="–"; fi
        floor=$(awk '/^dump-tcp / { print $2; exit }' "$d/floor-$n.txt")
        if [ "$n" -eq 54000 ]; then ftarget="≤ $TARGET_SAMPLE_FLOOR"; fres=$(verdict "$(calc '%.3f' "$med / $floor")" "$TARGET_SAMPLE_FLOOR"); else ftarget="(info)"; fres="–"; fi
        row "| $n ($((2 * n))) | $tcp_total | $list ms | $(calc '%.1f' "$med") ms | $target | $res | $cpu s / $wall s | $(calc '%.1f' "$ssm") ms | $(calc '%.3f' "$med / $ssm") | $floor ms | $(calc '%.3f' "$med / $floor") | $ftarget | $fres |"
    done
    row ""
}

# ================================================================ part 3
part3() {
    local d="$OUT/p3" bps
    mkdir -p "$d"; rm -f "$d"/*
    udp_busy "$UDP_PORT" && die "UDP port $UDP_PORT is in use; set TRAFFIC_UDP_PORT"
    tcp_busy "$UDP_PORT" && die "TCP port $UDP_PORT (iperf3's control connection) is in use; set TRAFFIC_UDP_PORT"
    wait_quiet
    bps=$((UDP_PPS * 64 * 8))

    # a) CPU: an 8 s window inside 10 s of load.
    log "part 3a: iperf3 -u -l 64 -b $bps ($UDP_PPS datagrams/s) to 127.0.0.1:$UDP_PORT for 10 s; ports --sample 8s --capture"
    bg timeout 60 iperf3 -s -p "$UDP_PORT" -1 -J >"$d/a-server.json" 2>"$d/a-server.err"; local srv=$LAST
    sleep 0.5
    bg timeout 40 iperf3 -u -c 127.0.0.1 -p "$UDP_PORT" -b "$bps" -l 64 -t 10 -J >"$d/a-client.json" 2>"$d/a-client.err"; local cli=$LAST
    sleep 1
    /usr/bin/time -f '%e %U %S %M' -o "$d/a-capture.time" \
        timeout 40 "$PW" ports "$UDP_PORT/udp" --sample 8s --capture --json >"$d/a-capture.json" 2>"$d/a-capture.err" || true
    wait "$cli" || die "iperf3 client failed: $(cat "$d/a-client.err")"
    wait "$srv" || true

    # b) exactness: the window encloses a 6 s burst.
    log "part 3b: the same load for 6 s inside a 9 s --capture window (every datagram inside it)"
    bg timeout 60 iperf3 -s -p "$UDP_PORT" -1 -J >"$d/b-server.json" 2>"$d/b-server.err"; srv=$LAST
    sleep 0.5
    bg /usr/bin/time -f '%e %U %S %M' -o "$d/b-capture.time" \
        timeout 40 "$PW" ports "$UDP_PORT/udp" --sample 9s --capture --json >"$d/b-capture.json" 2>"$d/b-capture.err"
    local cap=$LAST
    sleep 1
    timeout 40 iperf3 -u -c 127.0.0.1 -p "$UDP_PORT" -b "$bps" -l 64 -t 6 -J >"$d/b-client.json" 2>"$d/b-client.err" ||
        die "iperf3 client failed: $(cat "$d/b-client.err")"
    wait "$cap" || true
    wait "$srv" || true

    if [ "$PERF" = 1 ]; then
        log "part 3 (perf, not timed): perf record -g portwatch ports --capture under the same load"
        bg timeout 60 iperf3 -s -p "$UDP_PORT" -1 >/dev/null 2>&1; local s2=$LAST; sleep 0.5
        bg timeout 40 iperf3 -u -c 127.0.0.1 -p "$UDP_PORT" -b "$bps" -l 64 -t 10 >/dev/null 2>&1; local c2=$LAST; sleep 1
        perf record -q -g -o "$d/perf-capture.data" -- "$PW" ports "$UDP_PORT/udp" --sample 8s --capture --json >/dev/null 2>&1 || true
        wait "$c2" || true; wait "$s2" || true
        perf report -i "$d/perf-capture.data" --stdio --no-children --percent-limit 2 >"$d/perf-capture.txt" 2>/dev/null || true
    fi

    local x wall cpu rss share win rx rxp tx txp drops sent sent_pps exp lost
    {
        echo "### Part 3: packet capture at ~$UDP_PPS datagrams/s (iperf3 UDP, 64-byte payload, 127.0.0.1:$UDP_PORT)"
        echo
        echo "| Run | portwatch CPU / wall | share of one core (CPU / window) | target | window | packets counted (received) | datagrams sent (iperf3 -J) | counted / sent | capture_kernel_drops | target | result | server socket drops (portwatch) / iperf3 lost |"
        echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    } >>"$ROWS"
    for x in a b; do
        read -r wall cpu rss < <(timefile "$d/$x-capture.time")
        win=$(jq '.window_seconds' "$d/$x-capture.json")
        share=$(calc '%.2f' "100 * $cpu / $win")
        read -r rx rxp tx txp drops < <(jq -r --argjson p "$UDP_PORT" \
            '[.ports[] | select(.protocol == "udp" and .port == $p and .role == "local") | .window][0] as $w
             | "\($w.bytes.received) \($w.packets.received) \($w.bytes.sent) \($w.packets.sent) \($w.errors.drops)"' "$d/$x-capture.json")
        kd=$(jq '.capture_kernel_drops' "$d/$x-capture.json")
        sent=$(jq '.end.sum.packets' "$d/$x-client.json")
        lost=$(jq '.end.sum.lost_packets' "$d/$x-client.json")
        sent_pps=$(jq '.end.sum.packets / .end.sum.seconds' "$d/$x-client.json")
        if [ "$x" = a ]; then
            exp=$(calc '%.0f' "$sent_pps * $win")   # the window lies inside the load
            res=$(awk -v s="$share" -v t="$TARGET_CAPTURE_CPU" -v k="$kd" 'BEGIN { print (s <= t && k == 0) ? "PASS" : "FAIL" }')
            row "| a: 8 s window inside 10 s of load | $cpu s / $wall s | $share % | ≤ $TARGET_CAPTURE_CPU % | $(calc '%.3f' "$win") s | $rxp | ≈ $exp (= $(calc '%.0f' "$sent_pps")/s × window) | $(calc '%.4f' "$rxp / $exp") | $kd | 0 | $res | $drops / $lost |"
        else
            res=$(awk -v k="$kd" -v r="$rxp" -v s="$sent" 'BEGIN { print (k == 0 && r >= s && r <= s + 2) ? "PASS" : "FAIL" }')
            row "| b: 9 s window around 6 s of load | $cpu s / $wall s | $share % | (info) | $(calc '%.3f' "$win") s | $rxp | $sent | $(calc '%.6f' "$rxp / $sent") | $kd | 0, counted = sent (+1 connect datagram) | $res | $drops / $lost |"
        fi
    done
    row ""
    row "Bytes counted in run b: received $(jq -r --argjson p "$UDP_PORT" '[.ports[] | select(.protocol == "udp" and .port == $p and .role == "local") | .window.bytes.received][0]' "$d/b-capture.json") (iperf3 sent $(jq '.end.sum.bytes' "$d/b-client.json") payload bytes), sent $(jq -r --argjson p "$UDP_PORT" '[.ports[] | select(.protocol == "udp" and .port == $p and .role == "local") | .window | "\(.bytes.sent) bytes in \(.packets.sent) packets"][0]' "$d/b-capture.json")."
    row ""
}

for part in $PARTS; do
    case "$part" in
        1) part1 ;;
        2) part2 ;;
        3) part3 ;;
        *) die "unknown part '$part' (1, 2 or 3)" ;;
    esac
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

{
    echo "portwatch traffic benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), kernel $(uname -r)"
    echo "portwatch: $REV; iperf3 $(iperf3 --version | awk 'NR == 1 { print $2 }'), iptraf-ng $(dpkg-query -W -f '${Version}' iptraf-ng 2>/dev/null || echo '?')"
    echo "load average before/after: $LOAD_BEFORE / $LOAD_AFTER"
    echo
    cat "$ROWS"
} | tee "$SUMMARY"
