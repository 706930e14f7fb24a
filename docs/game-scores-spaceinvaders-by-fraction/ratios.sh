#!/usr/bin/env bash
# SpaceInvaders students at fractions 0.01 and 0.05 (8000 steps, default recipe with the warm-up, seeds 0-2; session 14)
# and 0.1 and 0.5 (the same; session 19):
# 60 games per mode and student on seeds 1000-1005; teacher: its card's 30 games plus 60 per mode on seeds 1000-1005
# (distill-eval --teacher SpaceInvaders --episodes 60 --envs 6 --seed 1000 --mode both).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=docs/game-scores-spaceinvaders-by-fraction
teacher="teachers/cards/spaceinvaders.json $here/teacher-60-s1000.json"
for f in 0.01 0.05 0.1 0.5; do
    for a in 1 0; do
        echo "== fraction $f, alpha $a, against the teacher"
        python scripts/score_ratio.py --students $here/student8k-f$f-a$a-s*-60-s1000.json --teacher $teacher
    done
    echo "== fraction $f, Sobolev over KL-only"
    python scripts/score_ratio.py --students $here/student8k-f$f-a1-s*-60-s1000.json \
        --teacher $here/student8k-f$f-a0-s*-60-s1000.json
done
