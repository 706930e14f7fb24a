#!/usr/bin/env bash
# One device call: record Breakout on the GPU, CUDA tests, bench_train on CUDA, then the figure-4 grid at
# 20,000 steps (the plateau) with WORKERS invocations side by side until DEADLINE seconds; pack results to $OUT.
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
: "${STATES:=100000}" "${STEPS:=20000}" "${EVAL_EVERY:=1000}" "${DEVICE:=cuda}" "${WORKERS:=12}" "${DEADLINE:=545}"
: "${BENCH_STEPS:=300}" "${RUN_TESTS:=1}" "${OUT:=/tmp/out}"
mkdir -p "$OUT" /tmp/side; LOG="$OUT/main.log"; SIDE=/tmp/side
say() { echo "[$(el)s] $*" | tee -a "$LOG"; }
if [[ "$DEVICE" == cuda ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$LOG" 2>&1
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
PY=python3
$PY -c "import torch, gymnasium, ale_py, stable_baselines3, h5py; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '', 'cpus', __import__('os').cpu_count())" 2>&1 | tee -a "$LOG"
REC=data/recordings/breakout-100k-t5.75M-s0.h5
GRID=data/figure4/breakout-t5.75M-cos20k-warmup
mkdir -p data/recordings
if [[ "$RUN_TESTS" == 1 ]]; then
  ( $PY -m pytest -q -p no:cacheprovider -x > "$SIDE/pytest.log" 2>&1; echo "pytest rc $? at $(el)s" >> "$SIDE/pytest.log" ) &
  TESTS_PID=$!
fi
say "record $STATES states on $DEVICE"
$PY -m distill.cli.record --game Breakout --states "$STATES" --out "$REC" --seed 0 --codec none --device "$DEVICE" --force 2>&1 \
  | tr '\r' '\n' | grep -v '^\s*$' | tail -n 3 | tee -a "$LOG"
say "record done"
$PY .whl/fingerprint.py "$REC" > "$SIDE/fingerprint.json" 2>&1
$PY -m distill.cli.inspect "$REC" --verify --device "$DEVICE" 2>&1 | tee -a "$LOG"
say "bench_train"
$PY scripts/bench_train.py --dataset "$REC" --steps "$BENCH_STEPS" --device "$DEVICE" 2>&1 | tee -a "$LOG"
say "grid: $WORKERS workers until ${DEADLINE}s"
setsid scripts/figure4_parallel.sh "$WORKERS" --dataset "$REC" --out "$GRID" --fractions 0.1 0.5 0.05 0.01 --seeds 3 \
  --steps "$STEPS" --eval-every "$EVAL_EVERY" --device "$DEVICE" > "$SIDE/grid-driver.log" 2>&1 &
GPID=$!
while kill -0 "$GPID" 2>/dev/null; do
  if (( $(el) > DEADLINE )); then say "deadline: stopping the grid"; kill -- -"$GPID" 2>/dev/null; sleep 2; kill -9 -- -"$GPID" 2>/dev/null; break; fi
  sleep 3
done
wait "$GPID" 2>/dev/null
say "grid stopped; finished runs: $(ls $GRID/runs/*/metrics.json 2>/dev/null | wc -l)"
[[ -n "${TESTS_PID:-}" ]] && { wait "$TESTS_PID"; tail -n 5 "$SIDE/pytest.log" >> "$LOG"; }
nvidia-smi --query-gpu=memory.used --format=csv >> "$LOG" 2>&1 || true
# pack: per run curve / final / config in --publish layout, logs, and model-only checkpoints of the 10% runs
PACK=/tmp/pack; rm -rf $PACK; mkdir -p $PACK/metrics $PACK/logs $PACK/ckpt
for r in "$GRID"/runs/*/; do
  n=$(basename "$r")
  [[ -f "$r/metrics.csv" ]] && cp "$r/metrics.csv" "$PACK/metrics/$n.csv"
  [[ -f "$r/config.json" ]] && cp "$r/config.json" "$PACK/metrics/$n.config.json"
  [[ -f "$r/metrics.json" ]] && cp "$r/metrics.json" "$PACK/metrics/$n.json"
done
for w in "$GRID"/worker-*.log; do tr '\r' '\n' < "$w" | grep -v '^\s*$' | tail -n 40 > "$PACK/logs/$(basename "$w")"; done
cp "$GRID"/figure4.png "$GRID"/table.md "$GRID"/results.json $PACK/ 2>/dev/null
cp $SIDE/* $PACK/logs/; tar -C $PACK -czf "$OUT/grid.tar.gz" metrics logs $(cd $PACK && ls figure4.png table.md results.json 2>/dev/null)
$PY - "$GRID" "$PACK/ckpt" <<'PYEOF'
import sys, torch, pathlib
grid, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for run in sorted((grid / "runs").glob("f0.1-*")):
    if (run / "metrics.json").exists():
        d = dst / run.name; d.mkdir(parents=True)
        state = torch.load(run / "latest.pt", map_location="cpu", weights_only=False)
        torch.save({"model": state["model"], "step": state["step"]}, d / "latest.pt")
        (d / "config.json").write_text((run / "config.json").read_text())
        (d / "metrics.json").write_text((run / "metrics.json").read_text())
PYEOF
for a in a0 a1; do ds=$(cd $PACK/ckpt 2>/dev/null && ls -d f0.1-$a-* 2>/dev/null); [[ -n "$ds" ]] && tar -C $PACK/ckpt -cf "$OUT/ckpt-$a.tar" $ds; done
ls -la "$OUT" | tee -a "$LOG"
say "done"
