#!/usr/bin/env bash
# portwatch across network namespaces vs a loop of `ip netns exec NS ss -tanp`.
#
#   benchmarks/netns.sh                          # 50 namespaces x 100 connections
#   BENCH_NAMESPACES=10 benchmarks/netns.sh      # quick run
#
# Each namespace (pwbench-PID-N, deleted on exit) holds a listener on 127.0.0.1:8080 and
# BENCH_NS_CONNS established connections to it (hold_sockets, inside the namespace, on its
# own loopback). Compared, side by side in one hyperfine run:
#   portwatch ports --all-namespaces          (every namespace, with owning processes)
#   for NS in ...; do ip netns exec NS ss -tanp; done
# Targets: portwatch median <= 0.2 s and <= 0.2x the loop's median.
# Then the daemon's side: `portwatch-bench netns-sample` times the daemon's NamespaceSampler
# (namespaces: [the 50 names]) against the same sampler over ONE more namespace holding as
# many connections as all of them together (BENCH_NAMESPACES x BENCH_NS_CONNS).
# Target: a sample of all of them <= 2x a sample of the one. The held connections are idle,
# so the daemon reuses each namespace's last walk of the kernel's TCP tables (its counters show
# no TCP change); the same comparison is then printed with --walk-always, what every sample
# costs when every namespace has TCP traffic in every interval (no target: the kernel walks its
# shared tables once per namespace, see RESULTS.md).
#
# Environment (all optional):
#   BENCH_NAMESPACES  namespaces to create                 (default 50)
#   BENCH_NS_CONNS    established connections per namespace (default 100)
#   BENCH_RUNS        hyperfine --runs                      (default 10)
#   BENCH_WARMUP      hyperfine --warmup                    (default 2)
#   PORTWATCH         use this binary (default: release build of this checkout)
#   PORTWATCH_BENCH   portwatch-bench binary (default: next to PORTWATCH; the daemon part
#                     is skipped when there is none)
#   BENCH_SAMPLES     daemon samples timed per side             (default 20)
#   BENCH_OUT         where results go                      (default benchmarks/out)
# Needs root (ip netns add), cc, ss, hyperfine, jq.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
COUNT="${BENCH_NAMESPACES:-50}"
CONNS="${BENCH_NS_CONNS:-100}"
RUNS="${BENCH_RUNS:-10}"
WARMUP="${BENCH_WARMUP:-2}"
OUT="${BENCH_OUT:-$HERE/out}"
BIN="$HERE/bin"
TARGET_SECONDS=0.2
TARGET_RATIO=0.2
TARGET_DAEMON=2
SAMPLES="${BENCH_SAMPLES:-20}"

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'netns.sh: %s\n' "$*" >&2; exit 1; }
for tool in cc ss ip hyperfine jq awk; do command -v "$tool" >/dev/null || die "missing $tool"; done
[ "$(id -u)" = 0 ] || die "needs root (ip netns add)"
mkdir -p "$BIN" "$OUT"

cc -O2 -Wall -Wextra -o "$BIN/hold_sockets" "$HERE/hold_sockets.c"
if [ -n "${PORTWATCH:-}" ]; then
    PW="$PORTWATCH"
else
    log "building portwatch (release)"
    (cd "$ROOT" && swift build -c release --product portwatch) >&2
    PW="$ROOT/.build/release/portwatch"
fi
[ -x "$PW" ] || die "no portwatch binary at $PW"
PWB="${PORTWATCH_BENCH:-$(dirname "$PW")/portwatch-bench}"

PREFIX="pwbench-$$"
NAMES=()
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in "${NAMES[@]}"; do ip netns delete "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "creating $COUNT namespaces with $CONNS connections each"
for i in $(seq "$COUNT"); do
    ns="$PREFIX-$i"
    ip netns add "$ns"
    NAMES+=("$ns")
    ip -n "$ns" link set lo up
    ip netns exec "$ns" "$BIN/hold_sockets" -p 8080 -n "$CONNS" -b 1024 -t 900 -a 1000 -c 1000 \
        >"$OUT/netns-holder-$i.log" 2>&1 &
    PIDS+=("$!")
done
for i in $(seq "$COUNT"); do
    deadline=$((SECONDS + 120))
    until grep -q '^ready ' "$OUT/netns-holder-$i.log"; do
        [ "$SECONDS" -lt "$deadline" ] || { cat "$OUT/netns-holder-$i.log" >&2; die "holder $i not ready"; }
        sleep 0.2
    done
done

# Sanity: portwatch sees every namespace's listener with its connections.
seen=$("$PW" ports 8080 --all-namespaces --json \
    | jq --arg p "$PREFIX-" '[.ports[] | select(.namespace.name // "" | startswith($p)) | select(.connections.established == '"$CONNS"')] | length')
[ "$seen" = "$COUNT" ] || die "portwatch saw $seen of $COUNT namespaces with $CONNS connections"

LOOP="$OUT/netns-ss-loop.sh"
{
    echo '#!/usr/bin/env bash'
    for ns in "${NAMES[@]}"; do echo "ip netns exec $ns ss -tanp"; done
} >"$LOOP"
chmod +x "$LOOP"

log "timing (hyperfine, $RUNS runs)"
hyperfine --runs "$RUNS" --warmup "$WARMUP" --style basic --export-json "$OUT/netns.json" \
    -n "portwatch ports --all-namespaces" "$PW ports --all-namespaces" \
    -n "ip netns exec NS ss -tanp (x$COUNT)" "$LOOP" >&2

pw=$(jq '.results[0].median' "$OUT/netns.json")
peer=$(jq '.results[1].median' "$OUT/netns.json")
ratio=$(awk -v a="$pw" -v b="$peer" 'BEGIN { printf "%.3f", a / b }')
ok_s=$(awk -v a="$pw" -v t="$TARGET_SECONDS" 'BEGIN { print (a <= t) ? "met" : "MISSED" }')
ok_r=$(awk -v r="$ratio" -v t="$TARGET_RATIO" 'BEGIN { print (r <= t) ? "met" : "MISSED" }')
printf '\nnamespaces %s, connections per namespace %s\n' "$COUNT" "$CONNS"
printf 'portwatch ports --all-namespaces  median %.4f s  (target <= %s s: %s)\n' "$pw" "$TARGET_SECONDS" "$ok_s"
printf 'ip netns exec NS ss -tanp loop    median %.4f s\n' "$peer"
printf 'ratio %s (target <= %s: %s)\n' "$ratio" "$TARGET_RATIO" "$ok_r"

if [ ! -x "$PWB" ]; then
    printf '\ndaemon sample: skipped (no portwatch-bench at %s)\n' "$PWB"
    exit 0
fi
big="$PREFIX-big"
log "daemon samples: one namespace with $((COUNT * CONNS)) connections"
ip netns add "$big"
NAMES+=("$big")
ip -n "$big" link set lo up
ip netns exec "$big" "$BIN/hold_sockets" -p 8080 -n "$((COUNT * CONNS))" -b 1024 -t 900 -a 1000 -c 1000 \
    >"$OUT/netns-holder-big.log" 2>&1 &
PIDS+=("$!")
deadline=$((SECONDS + 300))
until grep -q '^ready ' "$OUT/netns-holder-big.log"; do
    [ "$SECONDS" -lt "$deadline" ] || { cat "$OUT/netns-holder-big.log" >&2; die "big holder not ready"; }
    sleep 0.2
done
# Alternate the two sides so both see the same load; the medians of the rounds are compared.
compare() {
    local label="$1"; shift
    local all_json="$OUT/netns-sample-all$label.jsonl" one_json="$OUT/netns-sample-one$label.jsonl"
    : >"$all_json"
    : >"$one_json"
    for round in 1 2 3; do
        "$PWB" netns-sample "$@" --samples "$SAMPLES" "${NAMES[@]:0:$COUNT}" >>"$all_json"
        "$PWB" netns-sample "$@" --samples "$SAMPLES" "$big" >>"$one_json"
    done
    all=$(jq -s 'map(.median) | sort | .[1]' "$all_json")
    one=$(jq -s 'map(.median) | sort | .[1]' "$one_json")
    all_cpu=$(jq -s 'map(.cpu_median) | sort | .[1]' "$all_json")
    one_cpu=$(jq -s 'map(.cpu_median) | sort | .[1]' "$one_json")
    all_sockets=$(jq -s '.[0].sockets' "$all_json")
    one_sockets=$(jq -s '.[0].sockets' "$one_json")
    all_reuse=$(jq -s '.[0] | "\(.replays) reused / \(.walks) walked"' "$all_json")
    dratio=$(awk -v a="$all" -v b="$one" 'BEGIN { printf "%.3f", a / b }')
}
compare ""
ok_d=$(awk -v r="$dratio" -v t="$TARGET_DAEMON" 'BEGIN { print (r <= t) ? "met" : "MISSED" }')
printf '\ndaemon sample, %s namespaces (%s sockets)  median %.4f s  cpu %.4f s  (%s)\n' "$COUNT" "$all_sockets" "$all" "$all_cpu" "$all_reuse"
printf 'daemon sample, 1 namespace (%s sockets)    median %.4f s  cpu %.4f s\n' "$one_sockets" "$one" "$one_cpu"
printf 'ratio %s (target <= %s: %s)\n' "$dratio" "$TARGET_DAEMON" "$ok_d"
compare "-walk" --walk-always
printf '\nevery sample walking (--walk-always: TCP traffic in every namespace every interval)\n'
printf 'daemon sample, %s namespaces  median %.4f s  cpu %.4f s\n' "$COUNT" "$all" "$all_cpu"
printf 'daemon sample, 1 namespace    median %.4f s  cpu %.4f s\n' "$one" "$one_cpu"
printf 'ratio %s (no target)\n' "$dratio"
