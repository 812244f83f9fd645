#!/usr/bin/env bash
# A/B throughput of two pipeline binaries on one corpus, alternating runs
# so that load and page-cache state hit both alike. Prints one line per run:
# round, binary (a or b), config, MB/s, peak RSS.
# Configs: bench/discard.yaml, bench/windows.yaml, bench/file.yaml (as bench/e2e.sh).
# Usage: bench/ab.sh A_BIN B_BIN CORPUS [ROUNDS]
#   e.g. git worktree add /tmp/base <rev> && (cd /tmp/base && go build -o /tmp/pl-a ./cmd/pipeline)
#        go build -o /tmp/pl-b ./cmd/pipeline && bench/ab.sh /tmp/pl-a /tmp/pl-b bench/corpus/jsonl-1GiB.jsonl 5
set -euo pipefail
a=${1:?A binary}; b=${2:?B binary}; corpus=${3:?corpus}; rounds=${4:-5}
cd "$(dirname "$0")/.."
mkdir -p bench/out
cat "$corpus" >/dev/null # warm the page cache
for i in $(seq "$rounds"); do
  for v in a b; do
    bin=$a; [ "$v" = b ] && bin=$b
    for cfg in discard windows file; do
      rm -rf bench/out/records bench/out/dlq
      sync; sleep 2 # the previous run's writeback is not charged to this one
      /usr/bin/time -f '%M' -o "bench/out/ab-$v-$cfg-$i.rss" \
        "$bin" replay -c "bench/$cfg.yaml" --no-progress --report "bench/out/ab-$v-$cfg-$i.json" "$corpus" >/dev/null 2>&1
      printf '%s %s %-8s %7.1f MB/s  peak RSS %3d MiB\n' "$i" "$v" "$cfg" \
        "$(sed -n 's/.*"mb_per_s": \([0-9.]*\).*/\1/p' "bench/out/ab-$v-$cfg-$i.json")" \
        "$(( $(cat "bench/out/ab-$v-$cfg-$i.rss") / 1024 ))"
    done
  done
done
rm -rf bench/out/records bench/out/dlq
