#!/usr/bin/env bash
# End-to-end replay benchmark: throughput and peak memory of `pipeline
# replay` on a generated corpus, with the discard sink (with and without
# the window stage) and the file sink.
# Usage: bench/e2e.sh BIN CORPUS   (make bench-e2e does the setup)
set -euo pipefail
bin=${1:?binary}; corpus=${2:?corpus}
cd "$(dirname "$0")/.."
mkdir -p bench/out

run() { # name config input...
  local name=$1 cfg=$2; shift 2
  rm -rf bench/out/records bench/out/dlq bench/out/windows
  # Let the previous run's writeback finish: it would be charged to this one.
  sync; sleep 3
  /usr/bin/time -f '%M' -o bench/out/$name.rss \
    "$bin" replay -c "$cfg" --no-progress --report bench/out/$name.json "$@" >/dev/null
  local mbs rss secs
  mbs=$(sed -n 's/.*"mb_per_s": \([0-9.]*\).*/\1/p' bench/out/$name.json)
  secs=$(sed -n 's/.*"seconds": \([0-9.]*\).*/\1/p' bench/out/$name.json)
  rss=$(( $(cat bench/out/$name.rss) / 1024 ))
  printf '%-16s %7.1f MB/s %6.2f s  peak RSS %3d MiB\n' "$name" "$mbs" "$secs" "$rss"
}

# Warm the page cache.
cat "$corpus" >/dev/null
size=$(stat -c %s "$corpus")
echo "corpus: $corpus ($((size / 1024 / 1024)) MiB), $(nproc) cores, $(go version | cut -d' ' -f3)"
# Windows (3 metrics) against no windows, alternating, 3 runs each: the
# ratio of the medians is the cost of the window stage end to end.
for i in 1 2 3; do
  run discard-$i bench/discard.yaml "$corpus"
  run windows-$i bench/windows.yaml "$corpus"
done
median() { sed -n 's/.*"mb_per_s": \([0-9.]*\).*/\1/p' "$@" | sort -n | sed -n 2p; }
d=$(median bench/out/discard-[123].json); w=$(median bench/out/windows-[123].json)
awk -v d="$d" -v w="$w" 'BEGIN { printf "windows / no windows (medians): %.1f / %.1f MB/s = %.0f%%\n", w, d, 100 * w / d }'
run file bench/file.yaml "$corpus"
# Memory must not grow with input size: a quarter of the corpus, to compare.
quarter=bench/out/quarter.jsonl
head -c $((size / 4)) "$corpus" | sed '$d' > "$quarter"
run discard-quarter bench/discard.yaml "$quarter"
rm -f "$quarter"
rm -rf bench/out/records bench/out/dlq bench/out/windows
