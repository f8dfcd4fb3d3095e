#!/usr/bin/env bash
# The key ratios of issue 6, three rounds side by side under 54,000 held connections:
# `ports --all --json`, `ports` and `ports --no-processes` (hyperfine), the floor's dump-tcp and
# dump+walk-N, one `top` sample (median of lines 2-6) and dump-tcp again.
#   PORTWATCH=.build/release/portwatch benchmarks/key.sh   (needs bin/ built by json.sh or run.sh)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.."
PW="${PORTWATCH:-.build/release/portwatch}"
B=benchmarks/bin
mkdir -p benchmarks/out
ulimit -n 20000
$B/hold_sockets -p 29447 -n 54000 -t 900 > "$B/../out/key-holder.log" 2>&1 &
H=$!
trap 'kill $H 2>/dev/null; wait $H 2>/dev/null' EXIT
for _ in $(seq 360); do grep -q '^ready' "$B/../out/key-holder.log" && break; sleep 0.5; done
sleep 10
for r in 1 2 3; do
  echo "round $r $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  hyperfine -N --warmup 1 --runs 5 --output=null -i --export-json "$B/../out/key-$r.json" \
     "$PW ports --all --json" "$PW ports" "$PW ports --no-processes" >/dev/null 2>&1
  jq -r '.results[] | "\(.command)\t\(.median*1000)"' "$B/../out/key-$r.json"
  $B/floor -m dump-tcp -r 5
  $B/floor -m dump+walk-N -r 5
  $PW top --interval 1s --iterations 6 --json 2>/dev/null | tail -n +2 | jq '.sample_seconds*1000' | sort -n | sed -n 3p | sed 's/^/top sample median ms\t/'
  $B/floor -m dump-tcp -r 5 | sed 's/^/after top: /'
done
