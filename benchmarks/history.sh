#!/usr/bin/env bash
# History benchmark (issue 7): fill a database as 7 days of 50 busy ports would (through the
# daemon's store code, simulated clock ending now), then time the CLI's queries on it.
#
#   benchmarks/history.sh            # release build, 50 ports, 7 days, 5 s interval
# Environment:
#   HISTORY_PORTS, HISTORY_DAYS, HISTORY_INTERVAL   fill parameters (defaults 50, 7, 5s)
#   HISTORY_RUNS                                    timed runs per CLI query (default 10)
#   HISTORY_DIR                                     where the database goes (default: a new dir in /dev/shm)
# The default directory is a tmpfs: the fill makes ~120,000 commits and ~7,000 WAL checkpoints, and
# on a shared disk their fsyncs, not portwatch, would set the fill time. Sizes and query times
# do not depend on it (after the fill the file is in the page cache either way).
# Targets: file <= 64 MB; `history PORT --since 24h --step 1m` and `--since 7d --step 1h` <= 50 ms.
set -euo pipefail
cd "$(dirname "$0")/.."

PORTS=${HISTORY_PORTS:-50}
DAYS=${HISTORY_DAYS:-7}
INTERVAL=${HISTORY_INTERVAL:-5s}
RUNS=${HISTORY_RUNS:-10}
SHM=/dev/shm; [ -d "$SHM" ] || SHM=/tmp
DIR=${HISTORY_DIR:-$(mktemp -d "$SHM/pw-history-bench.XXXXXX")}
DB="$DIR/history.sqlite"
rm -f "$DB" "$DB-wal" "$DB-shm"

swift build -c release --product portwatch >/dev/null
swift build -c release --product portwatch-bench >/dev/null
BIN=$(swift build -c release --show-bin-path)

echo "portwatch history benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), nproc $(nproc), $(git rev-parse --short HEAD)"
echo "fill: $BIN/portwatch-bench history-fill --ports $PORTS --days $DAYS --interval $INTERVAL --db $DB"
"$BIN/portwatch-bench" history-fill --ports "$PORTS" --days "$DAYS" --interval "$INTERVAL" --db "$DB" | tee "$DIR/fill.json"

# Wall time of whole CLI runs (process start, open, query, render JSON), median of $RUNS after one warm-up.
python3 - "$BIN/portwatch" "$DB" "$RUNS" <<'PY'
import json, statistics, subprocess, sys, time
binary, db, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
cases = [("--since 24h --step 1m", 50), ("--since 7d --step 1h", 50), ("--since 1h (raw)", None)]
print()
print("| CLI command | samples | median | max | target | result |")
print("|---|---|---|---|---|---|")
for flags, target in cases:
    args = [binary, "history", "10000", "--db", db, "--json"] + flags.split(" (")[0].split()
    subprocess.run(args, check=True, capture_output=True)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(args, check=True, capture_output=True).stdout
        times.append((time.perf_counter() - t0) * 1000)
    n = len(json.loads(out)["history"][0]["samples"])
    med = statistics.median(times)
    verdict = "(info)" if target is None else ("PASS" if med <= target else "FAIL")
    print(f"| `portwatch history 10000 {flags} --json` | {n} | {med:.1f} ms | {max(times):.1f} ms | "
          f"{'≤ %d ms' % target if target else '-'} | {verdict} |")
fill = json.load(open(db.rsplit("/", 1)[0] + "/fill.json"))
size = fill["file_bytes"] / 1e6
print(f"| file size (db + wal) | - | {size:.1f} MB | - | ≤ 64 MB | {'PASS' if size <= 64 else 'FAIL'} |")
PY
