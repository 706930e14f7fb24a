#!/usr/bin/env bash
# Run the figure-4 grid with N invocations of scripts/figure4.py side by side (one per core, or several per
# GPU); they share the grid through claim files and the last one to finish draws the figure and the table.
#
#   scripts/figure4_parallel.sh N --dataset data/recordings/breakout-100k-s0.h5 --out data/figure4/breakout-8k \
#       --seeds 3 --steps 8000 --eval-every 500
#
# Each invocation gets one torch thread on CPU (OMP_NUM_THREADS=1 unless set); logs go to OUT/worker-K.log,
# appended after a line that dates the invocation, so that a rerun in the same folder keeps the earlier logs.
set -euo pipefail
if [[ $# -lt 1 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 N figure4.py-arguments... (N: invocations side by side)" >&2
    exit 2
fi
n=$1
shift
out=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    [[ "${args[$i]}" == "--out" ]] && out="${args[$((i + 1))]:-}"
done
if [[ -z "$out" ]]; then
    echo "error: pass --out DIR (the shared grid directory)" >&2
    exit 2
fi
mkdir -p "$out"
here="$(cd "$(dirname "$0")" && pwd)"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
pids=()
for ((k = 1; k <= n; k++)); do
    echo "=== $(date -u '+%Y-%m-%d %H:%M:%S UTC') figure4.py $*" >> "$out/worker-$k.log"
    python "$here/figure4.py" "$@" >> "$out/worker-$k.log" 2>&1 &
    pids+=($!)
    sleep 2  # staggered, so that each claims a different run first
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=$?
done
# every run is finished now: one more pass reuses them all and draws the figure
python "$here/figure4.py" "$@" 2>&1 | tail -n 20
exit $status
