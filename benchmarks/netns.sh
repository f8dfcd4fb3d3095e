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
#
# Environment (all optional):
#   BENCH_NAMESPACES  namespaces to create                 (default 50)
#   BENCH_NS_CONNS    established connections per namespace (default 100)
#   BENCH_RUNS        hyperfine --runs                      (default 10)
#   BENCH_WARMUP      hyperfine --warmup                    (default 2)
#   PORTWATCH         use this binary (default: release build of this checkout)
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
