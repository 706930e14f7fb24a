#!/usr/bin/env bash
# Train (or continue) the three shipped teachers side by side, for machines with many cores
# (and a GPU if there is one): one distill-teacher process per game, one env process per game copy.
#
#   scripts/train_teachers_parallel.sh MINUTES [DIR]
#
# Each run stops cleanly after MINUTES and saves; running the script again continues all three
# (--resume). Breakout continues the shipped A2C teacher; Pong and SpaceInvaders use PPO (zoo
# settings, 8 envs), which needs fewer steps than A2C to reach their targets.
set -u
MINUTES=${1:?usage: $0 MINUTES [DIR]}
DIR=${2:-data/teachers}
mkdir -p "$DIR"
export OMP_NUM_THREADS=2 OPENCV_FOR_THREADS_NUM=1 PYTHONUNBUFFERED=1
[ -e "$DIR/breakout_a2c_s0.zip" ] || cp teachers/checkpoints/breakout_a2c.zip "$DIR/breakout_a2c_s0.zip"
pids=()
for spec in Breakout:a2c:16 Pong:ppo:8 SpaceInvaders:ppo:8; do
  IFS=: read -r game algo envs <<<"$spec"
  stem="$(echo "$game" | tr '[:upper:]' '[:lower:]')_${algo}_s0"
  python -m teachers.cli --game "$game" --algo "$algo" --envs "$envs" --steps 10000000 \
    --out "$DIR/$stem.zip" --vec-env subproc --max-minutes "$MINUTES" --resume >>"$DIR/$stem.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for log in "$DIR"/*_s0.log; do echo "== $log"; tail -c 400 "$log" | tr '\r' '\n' | tail -3; done
exit $status
