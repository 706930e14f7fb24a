#!/usr/bin/env bash
# SpaceInvaders with a falling Sobolev weight (sessions 18-19): game scores of the students at every fraction, 60 games per
# mode and student on seeds 1000-1005 (distill-eval --student RUN --no-teacher --episodes 60 --envs 6 --seed 1000
# --mode both), against the teacher (its card plus 60 games per mode on those seeds) and against the KL-only and
# constant-weight students of game-scores-spaceinvaders-by-fraction (same seeds). Prints every ratio quoted in
# docs/figure4.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=docs/figure4-spaceinvaders-t2.25M-cos8k-warmup-alin/scores
byf=docs/game-scores-spaceinvaders-by-fraction
teacher="teachers/cards/spaceinvaders.json $byf/teacher-60-s1000.json"
for f in 0.01 0.05 0.1 0.5; do
    linear="$here/student8k-alin-f$f-a1-s*-60-s1000.json"
    echo "== fraction $f, alpha 1 falling to 0, against the teacher"
    python scripts/score_ratio.py --students $linear --teacher $teacher
    echo "== fraction $f, alpha 1 falling to 0, over KL-only"
    python scripts/score_ratio.py --students $linear --teacher $byf/student8k-f$f-a0-s*-60-s1000.json
    echo "== fraction $f, alpha 1 falling to 0, over alpha 1 held constant"
    python scripts/score_ratio.py --students $linear --teacher $byf/student8k-f$f-a1-s*-60-s1000.json
done
