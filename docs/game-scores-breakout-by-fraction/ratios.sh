#!/usr/bin/env bash
# Breakout students' game scores at every training fraction (session 14): 60 games per mode and student on seeds
# 1000-1005 (distill-eval --student RUN --no-teacher --episodes 60 --envs 6 --seed 1000 --mode both), 8000 steps,
# default recipe, seeds 0-2. Fractions 0.01 and 0.5: the students of data/figure4/breakout-t5.75M-cos8k-warmup;
# 0.05: its checkpointed rerun data/figure4/breakout-t5.75M-cos8k-warmup-ckpt; 0.1: docs/game-scores-breakout-f0.1.
# Teacher: its card's 30 games plus 120 per mode on seeds 1000-1005.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=docs/game-scores-breakout-by-fraction
f01=docs/game-scores-breakout-f0.1
teacher="teachers/cards/breakout.json $f01/teacher-sample-120-s1000.json $f01/teacher-greedy-120-s1000.json"
for f in 0.01 0.05 0.1 0.5; do
    dir=$here
    [[ $f == 0.1 ]] && dir=$f01
    for a in 1 0; do
        echo "== fraction $f, alpha $a, against the teacher"
        python scripts/score_ratio.py --students $dir/student8k-f$f-a$a-s*-60-s1000.json --teacher $teacher
    done
    echo "== fraction $f, Sobolev over KL-only"
    python scripts/score_ratio.py --students $dir/student8k-f$f-a1-s*-60-s1000.json \
        --teacher $dir/student8k-f$f-a0-s*-60-s1000.json
done
echo "== held-out measures against game scores, all 42 students with 60-game evaluations (needs their runs in data/)"
python scripts/offline_vs_play.py $f01/student*-60-s1000.json docs/life-loss-weight-breakout-f0.1/student8k-lifeloss6-*-60-s1000.json \
    $here/student8k-*-60-s1000.json --json $here/offline-vs-play-all.json
