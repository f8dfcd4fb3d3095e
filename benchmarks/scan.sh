#!/usr/bin/env bash
# `portwatch scan` next to nmap, side by side in one run (issue 8, "Speed"):
#   1. scan 127.0.0.1 -p 1-65535            vs nmap -sT -T5 -p- -n -Pn 127.0.0.1     target ≤ 0.5×, same open set
#   2. scan HOST -p 1-5000 (1,000 dropped, 100 admin-prohibited ports)
#                                           vs nmap -sT -T4 -n -Pn -p 1-5000 HOST     target ≤ 1×, same states
#   3. scan --udp HOST -p 1-1024 (three UDP services)
#                                           vs nmap -sU -n -Pn -p 1-1024 HOST         target ≤ 1×, same states
# HOST is a network namespace of this script's own over a veth pair; the loopback scan runs in a
# namespace too, so the open set is the script's three listeners and nothing other users open
# meanwhile. Runs alternate portwatch and nmap; medians are reported.
#
#   benchmarks/scan.sh                    # RUNS=5 TCP runs, UDP_RUNS=3 UDP runs (~12 minutes: nmap -sU is slow)
#   RUNS=3 UDP_RUNS=1 benchmarks/scan.sh  # quicker
#   ONLY=loopback RUNS=7 benchmarks/scan.sh   # one comparison
#   PORTWATCH=/path/to/portwatch benchmarks/scan.sh
#
# The UDP host's net.ipv4.icmp_ratelimit is 0 (no per-peer limit; the global 1000/s limit stays):
# with the kernel's default (one ICMP error a second per peer after a burst of six) any exact
# UDP scan of 1,024 closed ports takes about 17 minutes, nmap's and portwatch's alike.
# Needs root (ip netns), nft, nmap, python3. Exit 0 when every target is met, 1 when one is
# missed, 2 on a setup failure. Everything created is removed on exit (trap).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PW="${PORTWATCH:-$ROOT/.build/release/portwatch}"
RUNS="${RUNS:-5}"
UDP_RUNS="${UDP_RUNS:-3}"
ONLY="${ONLY:-loopback filtered udp}"   # which comparisons to run
OUT="${BENCH_OUT:-$HERE/out-scan}"
mkdir -p "$OUT"
for tool in ip nft nmap python3; do command -v "$tool" >/dev/null || { echo "scan.sh: needs $tool" >&2; exit 2; }; done
[ -x "$PW" ] || { echo "scan.sh: no portwatch binary at $PW (swift build -c release --product portwatch)" >&2; exit 2; }

N=$(( ($$ % 200) + 20 ))
C="pwbench-$$-c"; S="pwbench-$$-s"; L="pwbench-$$-l"
CV4="10.198.$N.1"; SV4="10.198.$N.2"
SERVERS=()
cleanup() {
  for pid in "${SERVERS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for ns in "$C" "$S" "$L"; do ip netns delete "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT

# A listener process: accepts and closes TCP connections, answers every UDP datagram.
SERVER_PY='
import socket, select, sys, os
tcp = [int(x) for x in sys.argv[1].split(",") if x]
udp = [int(x) for x in sys.argv[2].split(",") if x]
host = sys.argv[3]
socks = {}
for p in tcp:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((host, p)); s.listen(128); socks[s.fileno()] = ("t", s)
for p in udp:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((host, p)); socks[s.fileno()] = ("u", s)
print("ready", flush=True)
for _ in range(10**7):
    r, _, _ = select.select(list(socks), [], [], 3600)
    for fd in r:
        kind, s = socks[fd]
        try:
            if kind == "t":
                c, _ = s.accept(); c.close()
            else:
                d, a = s.recvfrom(65535); s.sendto(d or b"x", a)
        except OSError:
            pass
'
start_server() {  # NS TCP-PORTS UDP-PORTS HOST
  local fifo="$OUT/ready.$1"
  rm -f "$fifo"
  ip netns exec "$1" timeout 7200 python3 -c "$SERVER_PY" "$2" "$3" "$4" > "$fifo" 2>&1 &
  SERVERS+=($!)
  for _ in $(seq 100); do grep -q ready "$fifo" 2>/dev/null && return 0; sleep 0.1; done
  echo "scan.sh: server in $1 did not start: $(cat "$fifo")" >&2; exit 2
}

ip netns add "$C"; ip netns add "$S"; ip netns add "$L"
ip -n "$C" link add pwc type veth peer name pws netns "$S"
for ns in "$C" "$S" "$L"; do ip -n "$ns" link set lo up; done
ip -n "$C" addr add "$CV4/30" dev pwc; ip -n "$S" addr add "$SV4/30" dev pws
ip -n "$C" link set pwc up; ip -n "$S" link set pws up
ip netns exec "$S" nft -f - <<NFT
table inet pwbench {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 1001-2000 drop
    tcp dport 2001-2100 reject with icmpx type admin-prohibited
  }
}
NFT
ip netns exec "$S" sysctl -qw net.ipv4.icmp_ratelimit=0
start_server "$S" 22,80,443,3306,4999 53,123,161 0.0.0.0
start_server "$L" 22,8080,40000 "" 127.0.0.1

# Seconds a command takes (its stdout to a file).
timed() {  # OUTFILE CMD...
  local out="$1"; shift
  local t0 t1
  t0=$(date +%s%N)
  "$@" > "$out" 2>"$out.err" || true
  t1=$(date +%s%N)
  echo "scale=3; ($t1 - $t0) / 1000000000" | bc
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# "same" when portwatch's JSON (--show-closed) and nmap's grepable output agree on every port.
COMPARE_PY='
import json, sys
try:
    pw = json.load(open(sys.argv[1]))
except ValueError:
    print("NO portwatch OUTPUT (see %s.err)" % sys.argv[1]); sys.exit(0)
ports = range(int(sys.argv[3]), int(sys.argv[4]) + 1); opens_only = sys.argv[5] == "open"; ports = range(int(sys.argv[3]), int(sys.argv[4]) + 1); opens_only = sys.argv[5] == "open"
ours = {}
for t in pw["targets"]:
    for p in t["ports"]:
        ours[p["port"]] = p["state"]
listed, ignored = {}, "closed"
for line in open(sys.argv[2]):
    if not line.startswith("Host:"): continue
    for part in line.rstrip("\n").split("\t"):
        if part.startswith("Ports: "):
            for e in part[len("Ports: "):].split(", "):
                f = e.split("/")
                listed[int(f[0])] = f[1]
        if part.startswith("Ignored State: "):
            ignored = part[len("Ignored State: "):].split(" ")[0]
theirs = {p: listed.get(p, ignored) for p in ports}
if opens_only:
    a = sorted(p for p, s in ours.items() if s == "open"); b = sorted(p for p, s in theirs.items() if s == "open")
    print("same" if a == b else "DIFFERENT open sets: portwatch %s nmap %s" % (a, b))
else:
    diff = [p for p in ports if ours.get(p, "closed") != theirs[p]]
    print("same" if not diff else "DIFFERENT on %d ports, e.g. %s" % (len(diff), [(p, ours.get(p), theirs[p]) for p in diff[:5]]))
'

declare -A PWT NMT SAME
bench() {  # NAME RUNS NS PW-ARGS... -- NMAP-ARGS... (then FIRST LAST open|all)
  local name="$1" runs="$2" ns="$3"; shift 3
  local pwargs=() nmargs=()
  while [ "$1" != "--" ]; do pwargs+=("$1"); shift; done; shift
  while [ "$1" != "--" ]; do nmargs+=("$1"); shift; done; shift
  local first="$1" last="$2" mode="$3"
  local pws=() nms=() same="same"
  for i in $(seq "$runs"); do
    pws+=($(timed "$OUT/$name.pw.json" ip netns exec "$ns" "$PW" scan "${pwargs[@]}" --show-closed --json))
    nms+=($(timed "$OUT/$name.nmap.txt" ip netns exec "$ns" nmap "${nmargs[@]}" -oG -))
    local verdict
    verdict=$(python3 -c "$COMPARE_PY" "$OUT/$name.pw.json" "$OUT/$name.nmap.txt" "$first" "$last" "$([ "$mode" = debug ] && echo open || echo "$mode")")
    [ "$verdict" = same ] || same="$verdict"
    echo "  $name run $i: portwatch ${pws[-1]} s, nmap ${nms[-1]} s, $verdict" >&2
  done
  if [ "$mode" = debug ]; then
    # nmap's grepable output leaves out ports of states it folds into "Not shown" when there are
    # several such states; with -d3 it lists every port. One untimed run for the comparison.
    ip netns exec "$ns" nmap "${nmargs[@]}" -d3 -oG "$OUT/$name.nmap-all.txt" >/dev/null 2>&1 || true
    same=$(python3 -c "$COMPARE_PY" "$OUT/$name.pw.json" "$OUT/$name.nmap-all.txt" "$first" "$last" all)
    echo "  $name: every port compared with nmap -d3: $same" >&2
  fi
  PWT[$name]=$(printf '%s\n' "${pws[@]}" | median)
  NMT[$name]=$(printf '%s\n' "${nms[@]}" | median)
  SAME[$name]="$same"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
want() { [[ " $ONLY " == *" $1 "* ]]; }
want loopback && bench loopback "$RUNS" "$L" 127.0.0.1 -p 1-65535 -- -sT -T5 -p- -n -Pn 127.0.0.1 -- 1 65535 open
want filtered && bench filtered "$RUNS" "$C" "$SV4" -p 1-5000 -- -sT -T4 -n -Pn -p 1-5000 "$SV4" -- 1 5000 debug
want udp && bench udp "$UDP_RUNS" "$C" --udp "$SV4" -p 1-1024 -- -sU -n -Pn -p 1-1024 "$SV4" -- 1 1024 all
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

status=0
{
  echo "portwatch scan benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), kernel $(uname -r), $(nmap --version | head -1)"
  echo "medians of $RUNS TCP / $UDP_RUNS UDP runs, alternating; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| comparison | portwatch | nmap | ratio | target | result | states |"
  echo "|---|---|---|---|---|---|---|"
  row() {  # NAME LABEL TARGET
    want "$1" || return 0
    local ratio result
    ratio=$(echo "scale=3; ${PWT[$1]} / ${NMT[$1]}" | bc)
    if [ "$(echo "$ratio <= $3" | bc)" = 1 ] && [ "${SAME[$1]}" = same ]; then result=PASS; else result=FAIL; status=1; fi
    echo "| $2 | ${PWT[$1]} s | ${NMT[$1]} s | $ratio | ≤ $3 | $result | ${SAME[$1]} |"
  }
  row loopback "\`scan 127.0.0.1 -p 1-65535\` vs \`nmap -sT -T5 -p- -n -Pn 127.0.0.1\`" 0.5
  row filtered "\`scan HOST -p 1-5000\` (1,000 dropped, 100 admin-prohibited) vs \`nmap -sT -T4 -n -Pn -p 1-5000\`" 1
  row udp "\`scan --udp HOST -p 1-1024\` (3 services) vs \`nmap -sU -n -Pn -p 1-1024\`" 1
} > "$OUT/summary.md"
cat "$OUT/summary.md"
exit $status
