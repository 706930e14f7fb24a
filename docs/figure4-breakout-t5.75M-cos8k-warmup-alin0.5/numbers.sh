#!/usr/bin/env bash
# Breakout 5%, 10% and 50%, `paper` student, 8000 steps, alpha 1 falling to 0 by half the run (--alpha-until 0.5; session 36):
# 60 games per mode and student on seeds 1000-1005 (distill-eval --student RUN --no-teacher --no-held-out
# --episodes 60 --envs 6 --seed 1000 --mode both), runs in data/figure4/breakout-t5.75M-cos8k-warmup-alin0.5.
# Teacher: its card's 30 games plus 120 per mode on seeds 1000-1005. KL-only and the other alpha-1 students: the
# same games of the published 8000-step students. Prints every ratio quoted in docs/figure4.md for this grid.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=docs/figure4-breakout-t5.75M-cos8k-warmup-alin0.5/scores
f01=docs/game-scores-breakout-f0.1
alin=docs/figure4-breakout-t5.75M-cos8k-warmup-alin/scores
teacher="teachers/cards/breakout.json $f01/teacher-sample-120-s1000.json $f01/teacher-greedy-120-s1000.json"
byf=docs/game-scores-breakout-by-fraction
for f in 0.05 0.1 0.5; do
    dir=$byf
    [[ $f == 0.1 ]] && dir=$f01
    students="$here/student8k-alin0.5-f$f-a1-s*-60-s1000.json"
    echo "== fraction $f, alpha 1 falling to 0 by half the run, against the teacher"
    python scripts/score_ratio.py --students $students --teacher $teacher
    echo "== fraction $f, over KL-only"
    python scripts/score_ratio.py --students $students --teacher $dir/student8k-f$f-a0-s*-60-s1000.json
    echo "== fraction $f, over alpha 1 held constant"
    python scripts/score_ratio.py --students $students --teacher $dir/student8k-f$f-a1-s*-60-s1000.json
    echo "== fraction $f, over alpha 1 falling to 0 at the last step"
    python scripts/score_ratio.py --students $students --teacher $alin/student8k-alin-f$f-a1-s*-60-s1000.json
done
