#!/usr/bin/env bash
# `portwatch probe --count N` against `nping --tcp-connect -c N`, side by side in one run, to a
# test host in a network namespace of this script's own (issue 8: "median within 10% of
# nping's").
#
#   benchmarks/probe.sh                                   # 5 rounds of 100 connects each
#   PORTWATCH=/path/to/portwatch benchmarks/probe.sh      # measure a given binary, no build
#
# Environment (all optional):
#   PROBE_COUNT   connects per tool per round   (default 100)
#   PROBE_DELAY   time between connects         (default 10ms; nping's --delay, probe's --interval)
#   PROBE_ROUNDS  rounds, tools alternating     (default 5)
#   PROBE_PATH_DELAY  delay added to every SYN on the path, e.g. 1ms (default none): an iptables
#                 NFQUEUE rule in the client namespace and benchmarks/nfq_delay.py holding each
#                 SYN that long (no netem on this kernel), so that the handshake is no longer
#                 finished inside connect() and both tools time a real round trip
#   PORTWATCH     binary to measure; skips the swift build
#   BENCH_OUT     where results go              (default benchmarks/out)
#
# What is compared: nping prints Min/Max/Avg rtt (to the microsecond) but no median, and its
# per-packet SENT/RCVD stamps are only 0.1 ms fine, so nping's central value is its Avg rtt.
# portwatch's median (HdrHistogram, from `probe --json`) is held to within 10% of it; its mean
# against nping's Avg is printed beside it (like for like). Both tools connect from the client
# namespace to one listener in the server namespace, over a veth pair.
#
# Exit 0 when the target is met, 1 when missed, 2 on a setup failure. Traffic stays inside the
# two namespaces made here; they and the listener are removed on exit (trap).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
COUNT="${PROBE_COUNT:-100}"
DELAY="${PROBE_DELAY:-10ms}"
ROUNDS="${PROBE_ROUNDS:-5}"
OUT="${BENCH_OUT:-$HERE/out}/probe"
TARGET_RATIO=1.10

die() { printf 'probe.sh: %s\n' "$*" >&2; exit 2; }
for tool in ip nping python3 jq awk; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y iproute2 nmap python3 jq)"
done
[ "$(id -u)" = 0 ] || die "needs root (network namespaces)"

if [ -z "${PORTWATCH:-}" ]; then
    (cd "$ROOT" && swift build -c release --product portwatch >&2) || die "release build failed"
    PORTWATCH="$ROOT/.build/release/portwatch"
fi
[ -x "$PORTWATCH" ] || die "no binary at $PORTWATCH"
mkdir -p "$OUT"

NC="pwbench-$$-c"; NS="pwbench-$$-s"; N=$(( $$ % 200 + 20 ))
CLIENT="10.249.$N.1"; SERVER="10.249.$N.2"; PORT=21080
LISTENER=""; DELAYER=""
cleanup() {
    [ -n "$LISTENER" ] && kill "$LISTENER" 2>/dev/null || true
    [ -n "$DELAYER" ] && kill "$DELAYER" 2>/dev/null || true
    ip netns delete "$NC" 2>/dev/null || true
    ip netns delete "$NS" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

ip netns add "$NC"; ip netns add "$NS"
ip -n "$NC" link add pwc type veth peer name pws netns "$NS"
ip -n "$NC" link set lo up; ip -n "$NS" link set lo up
ip -n "$NC" addr add "$CLIENT/30" dev pwc; ip -n "$NS" addr add "$SERVER/30" dev pws
ip -n "$NC" link set pwc up; ip -n "$NS" link set pws up

# The listener accepts and closes every connection; it stops by itself after 10 minutes.
ip netns exec "$NS" python3 -u -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1024); s.settimeout(1)
print("ready", flush=True)
end = time.time() + 600
while time.time() < end:
    try:
        c, _ = s.accept(); c.close()
    except socket.timeout:
        pass
' "$PORT" > "$OUT/listener.log" 2>&1 &
LISTENER=$!
for _ in $(seq 1 100); do grep -q ready "$OUT/listener.log" 2>/dev/null && break; sleep 0.05; done
grep -q ready "$OUT/listener.log" || die "listener did not start"

PATH_DELAY="${PROBE_PATH_DELAY:-}"
if [ -n "$PATH_DELAY" ]; then
    command -v iptables >/dev/null || die "PROBE_PATH_DELAY needs iptables"
    path_delay_s=$(awk -v d="$PATH_DELAY" 'BEGIN { v = d + 0; if (d ~ /us$/) v /= 1000000; else if (d ~ /ms$/) v /= 1000; print v }')
    ip netns exec "$NC" python3 -u "$HERE/nfq_delay.py" 7 "$path_delay_s" 600 > "$OUT/delayer.log" 2>&1 &
    DELAYER=$!
    for _ in $(seq 1 100); do grep -q ready "$OUT/delayer.log" 2>/dev/null && break; sleep 0.05; done
    grep -q ready "$OUT/delayer.log" || die "delayer did not start: $(cat "$OUT/delayer.log")"
    # Only the SYN is held: the handshake's round trip grows by the delay, nothing else does.
    # iptables' NFQUEUE target, not nft's `queue`: this kernel has nfnetlink_queue and the xt
    # target but not CONFIG_NFT_QUEUE (nft answers "No such file or directory").
    ip netns exec "$NC" iptables -A OUTPUT -d "$SERVER" -p tcp --dport "$PORT" --syn -j NFQUEUE --queue-num 7 \
        || die "iptables NFQUEUE rule failed"
fi

delay_s=$(awk -v d="$DELAY" 'BEGIN { v = d + 0; if (d ~ /ms$/) v /= 1000; print v }')
pw_cmd=("$PORTWATCH" probe "$SERVER:$PORT" --count "$COUNT" --interval "$DELAY" --json)
np_cmd=(nping --tcp-connect -c "$COUNT" --delay "$DELAY" -p "$PORT" "$SERVER")

: > "$OUT/rounds.tsv"
for round in $(seq 1 "$ROUNDS"); do
    # Alternate which tool goes first, so neither always runs on a warmer cache.
    for tool in $( [ $((round % 2)) = 1 ] && echo "pw np" || echo "np pw"); do
        if [ "$tool" = pw ]; then
            ip netns exec "$NC" "${pw_cmd[@]}" > "$OUT/probe-$round.json" || die "probe failed (round $round)"
            jq -r --arg r "$round" '.probes[0] | [$r, "portwatch", .latency_ms.min, .latency_ms.median, .latency_ms.mean, .latency_ms.max, .loss] | @tsv' \
                "$OUT/probe-$round.json" >> "$OUT/rounds.tsv"
        else
            ip netns exec "$NC" "${np_cmd[@]}" > "$OUT/nping-$round.txt" 2>&1 || die "nping failed (round $round)"
            awk -v r="$round" '
                /Max rtt:/ { gsub(/ms/, ""); max = $3; min = $7; avg = $11 }
                /Successful connections:/ { ok = $8; fail = $11 }
                END { printf "%s\tnping\t%s\t\t%s\t%s\t%s\n", r, min, avg, max, (ok + fail) ? fail / (ok + fail) : 1 }' \
                "$OUT/nping-$round.txt" >> "$OUT/rounds.tsv"
        fi
    done
done

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
pw_median=$(awk -F'\t' '$2 == "portwatch" { print $4 }' "$OUT/rounds.tsv" | median)
pw_mean=$(awk -F'\t' '$2 == "portwatch" { print $5 }' "$OUT/rounds.tsv" | median)
np_avg=$(awk -F'\t' '$2 == "nping" { print $5 }' "$OUT/rounds.tsv" | median)
ratio=$(awk -v a="$pw_median" -v b="$np_avg" 'BEGIN { printf "%.3f", a / b }')
mean_ratio=$(awk -v a="$pw_mean" -v b="$np_avg" 'BEGIN { printf "%.3f", a / b }')
within=$(awk -v r="$ratio" -v t="$TARGET_RATIO" 'BEGIN { print (r <= t && r >= 1 / t) ? "PASS" : "FAIL" }')

{
    echo "portwatch probe vs nping --tcp-connect — $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), kernel $(uname -r)"
    echo "namespace host $SERVER:$PORT over veth${PATH_DELAY:+, every SYN held $PATH_DELAY (nfqueue)}; $ROUNDS rounds x $COUNT connects, ${DELAY} apart; load $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "| round | tool | min ms | median ms | mean/avg ms | max ms | loss |"
    echo "|---|---|---|---|---|---|---|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, ($4 == "" ? "-" : $4), $5, $6, $7 }' "$OUT/rounds.tsv"
    echo
    echo "| comparison | portwatch | nping | ratio | target | result |"
    echo "|---|---|---|---|---|---|"
    echo "| median (pw) vs Avg rtt (nping), medians over rounds | $pw_median ms | $np_avg ms | $ratio | within 10% | $within |"
    echo "| mean (pw) vs Avg rtt (nping), like for like | $pw_mean ms | $np_avg ms | $mean_ratio | (info) | - |"
    echo
    echo "commands: ip netns exec CLIENT ${pw_cmd[*]}"
    echo "          ip netns exec CLIENT ${np_cmd[*]}"
} | tee "$OUT/summary.md"
[ "$within" = PASS ]
