#!/usr/bin/env bash
# `pipeline run` against `pipeline replay` on one corpus, in one script run:
#  1. catching up: the time `pipeline run` takes to read the whole corpus
#     (the bytes the process has read, /proc/PID/io rchar, reach the file's
#     size; what is in flight then is a few batches) against a replay of
#     the same file timed the same way, alternating, discard sink;
#  2. idle: CPU and RSS of `pipeline run` following 1,000 quiet files.
# The latency of one appended line is BenchmarkRunLatency
# (go test -run XXX -bench RunLatency ./cmd/pipeline/).
# Usage: bench/run.sh BIN CORPUS [ROUNDS]   (make bench-run does the setup;
# IDLE=0 skips the idle part)
set -euo pipefail
bin=$(realpath "${1:?binary}"); corpus=$(realpath "${2:?corpus}"); rounds=${3:-3}
cd "$(dirname "$0")/.."
out=$(realpath -m bench/out/run)
mkdir -p "$out"
size=$(stat -c %s "$corpus")
cat "$corpus" >/dev/null # warm the page cache
echo "corpus: $corpus ($((size / 1024 / 1024)) MiB), $(nproc) cores"

runcfg() { # state_dir checkpoint_every include...
  local st=$1 every=$2; shift 2
  printf 'sinks: [{name: discard, type: discard}]\ndlq: {file: {dir: %s/dlq}}\n' "$out"
  printf 'run: {state_dir: %s, checkpoint_every: %s}\nsources:\n  - name: bench\n    type: file\n    file:\n      include: [' "$st" "$every"
  local sep=""
  for g in "$@"; do printf '%s"%s"' "$sep" "$g"; sep=", "; done
  printf ']\n'
}

committed() { # config -> the highest offset committed
  "$bin" state ls --json -c "$1" 2>/dev/null | sed -n 's/.*"offset": \([0-9]*\),*$/\1/p' | sort -n | tail -1
}

# until_read PID: waits until process PID has read the whole corpus (the
# bytes it has read, /proc/PID/io rchar, reach its size; what is in flight
# then is a few batches) or has exited; prints the seconds since $start.
# Polls are 50ms apart: a poll is a process, and polling faster steals the
# CPU being measured (a first version polled every 5ms and measured run at
# half of replay).
until_read() {
  while { read -r _ rchar </proc/"$1"/io; } 2>/dev/null && [ "$rchar" -lt "$size" ]; do sleep 0.05; done
  echo "$(date +%s.%N) - $start" | bc -l
}
mbps() { echo "$size / 1000000 / $1" | bc -l; }

for i in $(seq "$rounds"); do
  # Both are timed the same way, from outside: process start (start-up
  # included) to the whole file read. Replay is also timed to its exit.
  rm -rf "$out/dlq"; sync; sleep 2
  start=$(date +%s.%N)
  "$bin" replay -c bench/discard.yaml --no-progress --report "$out/replay-$i.json" "$corpus" >/dev/null 2>&1 &
  pid=$!
  read_s=$(until_read $pid)
  wait $pid
  exit_s=$(echo "$(date +%s.%N) - $start" | bc -l)
  rep=$(mbps "$read_s")
  printf '%s replay %7.1f MB/s to the whole file read (%.1f MB/s to exit; %.1f by its report)\n' "$i" \
    "$rep" "$(mbps "$exit_s")" "$(sed -n 's/.*"mb_per_s": \([0-9.]*\).*/\1/p' "$out/replay-$i.json")"

  # Commits every 100ms: 50 times the default rate, so the checkpoints'
  # cost is charged to run at 50 times what the default costs
  # (BenchmarkCommit in sources/tail gives one commit's cost).
  rm -rf "$out/state" "$out/dlq"; sync; sleep 2
  runcfg "$out/state" 100ms "$corpus" >"$out/run.yaml"
  start=$(date +%s.%N)
  "$bin" run -c "$out/run.yaml" >/dev/null 2>"$out/run-$i.err" &
  pid=$!
  read_s=$(until_read $pid)
  # And the checkpoint reaches the end (after the next barrier and commit).
  while [ "$(committed "$out/run.yaml")" != "$size" ]; do sleep 0.1; done
  kill -TERM $pid; wait $pid || true
  run=$(mbps "$read_s")
  printf '%s run    %7.1f MB/s to the whole file read (checkpoint_every 100ms): %.0f%% of replay\n' "$i" \
    "$run" "$(echo "$run / $rep * 100" | bc -l)"
done

[ "${IDLE:-1}" = 0 ] && exit 0

# Idle: 1,000 files, nothing appended.
rm -rf "$out/idle" "$out/state" "$out/dlq"; mkdir -p "$out/idle"
for n in $(seq 1000); do echo '{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","name":"x"}' >"$out/idle/f$n.jsonl"; done
runcfg "$out/state" 5s "$out/idle/*.jsonl" >"$out/idle.yaml"
"$bin" run -c "$out/idle.yaml" >/dev/null 2>"$out/idle.err" &
pid=$!
sleep 15 # read them all, settle
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
t0=$(ticks); r0=$(rss); sleep 30; t1=$(ticks); r1=$(rss)
hz=$(getconf CLK_TCK)
kill -TERM $pid; wait $pid || true
printf 'idle, 1000 files: %.2f%% of one CPU over 30 s; RSS %d -> %d KiB\n' \
  "$(echo "($t1 - $t0) / $hz / 30 * 100" | bc -l)" "$r0" "$r1"
