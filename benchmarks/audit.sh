#!/usr/bin/env bash
# Cost of `portwatch audit` on a host with 50 listeners and a 500-rule nftables ruleset
# (issue 10, "Speed": ≤ 100 ms). The "host" is a private network namespace built here: the
# ruleset is loaded there, never in the machine's own namespace.
#
#   benchmarks/audit.sh                          # release build, then measure
#   PORTWATCH=/path/to/portwatch benchmarks/audit.sh   # measure a given binary, no build
#
# Inside the namespace: lo, a veth pair (both ends inside) with 192.0.2.1/24 and 2001:db8::1/64; 50
# listeners held by one python3 child (35 TCP on 0.0.0.0, 10 TCP on dual-stack ::, 5 UDP,
# none on a port the audit talks to, so no banner wait is measured); a ruleset of exactly 500
# rules: ct state and lo rules, 300 single-port accepts, 100 source-restricted accepts (the
# evaluator's forking case), a 200-element named set, a user chain of 90 rules reached by a
# jump, and a drop policy. hyperfine runs inside the namespace (`ip netns exec NS hyperfine`),
# so `ip netns exec`'s own start-up is not counted.
#
# Environment: PORTWATCH (binary), AUDIT_RUNS (default 30), BENCH_OUT (default benchmarks/out).
# Exit 0 when the median meets the target, 1 when not, 2 on a setup failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
RUNS="${AUDIT_RUNS:-30}"
OUT="${BENCH_OUT:-$HERE/out}"
TARGET_MS=100
NS="pw-audit-bench-$$"
mkdir -p "$OUT"

for tool in ip nft hyperfine python3; do
  command -v "$tool" >/dev/null || { echo "audit.sh: $tool is required" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "audit.sh: needs root (network namespaces, nft)" >&2; exit 2; }

if [ -z "${PORTWATCH:-}" ]; then
  (cd "$ROOT" && swift build -c release --product portwatch >/dev/null)
  PORTWATCH="$ROOT/.build/release/portwatch"
fi
[ -x "$PORTWATCH" ] || { echo "audit.sh: $PORTWATCH is not executable" >&2; exit 2; }

HOLDER=""
RULES="$OUT/audit-ruleset-$$.nft"
cleanup() {
  [ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null || true
  ip netns delete "$NS" 2>/dev/null || true
  rm -f "$RULES"
}
trap cleanup EXIT

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add pwd0 type veth peer name pwd1
ip -n "$NS" addr add 192.0.2.1/24 dev pwd0
ip -n "$NS" -6 addr add 2001:db8::1/64 dev pwd0 nodad
ip -n "$NS" link set pwd0 up
ip -n "$NS" link set pwd1 up

# The ruleset: 500 rules in all (counted below).
{
  echo "table inet bench {"
  echo "  set allowed { type inet_service; elements = { $(seq -s ', ' 40000 40199) } }"
  echo "  chain services {"
  for i in $(seq 0 89); do echo "    tcp dport $((41000 + i)) accept"; done
  echo "  }"
  echo "  chain input {"
  echo "    type filter hook input priority 0; policy drop;"
  echo "    ct state established,related accept"
  echo "    ct state invalid drop"
  echo "    iifname \"lo\" accept"
  echo "    meta l4proto icmp accept"
  echo "    meta l4proto ipv6-icmp accept"
  echo "    tcp dport 22 accept"
  for i in $(seq 0 299); do echo "    tcp dport $((30000 + i)) accept"; done
  for i in $(seq 0 99); do echo "    ip saddr 10.$((i / 250)).$((i % 250)).0/24 tcp dport $((31000 + i)) accept"; done
  echo "    tcp dport @allowed accept"
  echo "    jump services"
  echo "    udp dport 53 accept"
  echo "    counter reject with icmpx type admin-prohibited"
  echo "  }"
  echo "}"
} > "$RULES"
ip netns exec "$NS" nft -f "$RULES"
rules=$(ip netns exec "$NS" nft -j list ruleset | python3 -c 'import json,sys; print(sum(1 for x in json.load(sys.stdin)["nftables"] if "rule" in x))')
[ "$rules" = 500 ] || { echo "audit.sh: the ruleset has $rules rules, not 500" >&2; exit 2; }

# 50 listeners: some on accepted ports, some source-restricted, some dropped by the policy.
specs=()
for i in $(seq 0 14); do specs+=("tcp:0.0.0.0:$((30000 + i))"); done
for i in $(seq 0 9); do specs+=("tcp:0.0.0.0:$((31000 + i))"); done
for i in $(seq 0 9); do specs+=("tcp::::$((41000 + i))"); done
for i in $(seq 0 9); do specs+=("tcp:0.0.0.0:$((45000 + i))"); done
for i in $(seq 0 4); do specs+=("udp:0.0.0.0:$((46000 + i))"); done
READY="$OUT/audit-ready-$$"
ip netns exec "$NS" python3 -u -c '
import socket, sys, time
held = []
for spec in sys.argv[1:]:
    kind, host, port = spec.split(":", 1)[0], spec.split(":", 1)[1].rsplit(":", 1)[0], int(spec.rsplit(":", 1)[1])
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind((host, port))
    if kind == "tcp":
        s.listen(16)
    held.append(s)
print(len(held), flush=True)
time.sleep(600)
' "${specs[@]}" > "$READY" &
HOLDER=$!
for _ in $(seq 1 100); do [ -s "$READY" ] && break; sleep 0.1; done
[ "$(cat "$READY" 2>/dev/null)" = 50 ] || { echo "audit.sh: the listeners did not start" >&2; exit 2; }
rm -f "$READY"
listeners=$(ip netns exec "$NS" "$PORTWATCH" audit --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["listeners"]))')
[ "$listeners" = 50 ] || { echo "audit.sh: audit saw $listeners listeners, not 50" >&2; exit 2; }

echo "portwatch audit benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), kernel $(uname -r)"
echo "namespace with 50 listeners and a $rules-rule ruleset; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
json="$OUT/audit-hyperfine-$$.json"
ip netns exec "$NS" hyperfine --warmup 3 --runs "$RUNS" --shell=none --output=null --export-json "$json" \
  "$PORTWATCH audit" "$PORTWATCH audit --json" "$PORTWATCH audit --no-banners" \
  "nft -j list ruleset" "ss -tulnp" >/dev/null
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$json" "$TARGET_MS" <<'EOF'
import json, statistics, sys
results = json.load(open(sys.argv[1]))["results"]
target = float(sys.argv[2])
print()
print("| command | median | mean ± σ | min | CPU (user+sys, mean) |")
print("|---|---|---|---|---|")
for r in results:
    t = [x * 1000 for x in r["times"]]
    cpu = (r["user"] + r["system"]) * 1000
    print(f"| `{r['command'].split('/')[-1]}` | {statistics.median(t):.1f} ms | {statistics.mean(t):.1f} ± {statistics.stdev(t):.1f} ms | {min(t):.1f} ms | {cpu:.1f} ms |")
audit = statistics.median(x * 1000 for x in results[0]["times"])
ok = audit <= target
print()
print(f"`audit` median {audit:.1f} ms, target ≤ {target:.0f} ms: {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
EOF
