#!/usr/bin/env bash
# SpaceInvaders at fraction 0.01 with fresh directions from the live teacher (session 15, 2 CPU cores): the game
# scores of docs/figure4.md, "Fresh directions from the live teacher". Held-out: table.md here. Game scores: 60 games
# per mode and student on seeds 1000-1005 (distill-eval --student RUN --no-teacher --episodes 60 --envs 6 --seed 1000
# --mode both); teacher: its card plus 60 games per mode on those seeds; recorded-direction and KL-only students:
# docs/game-scores-spaceinvaders-by-fraction.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=docs/figure4-spaceinvaders-t2.25M-cos8k-warmup-live
before=docs/game-scores-spaceinvaders-by-fraction
echo "== live-teacher Sobolev students against the teacher"
python scripts/score_ratio.py --students $here/scores/student8k-live-f0.01-a1-s*-60-s1000.json \
    --teacher teachers/cards/spaceinvaders.json $before/teacher-60-s1000.json
echo "== live-teacher over recorded-direction Sobolev students"
python scripts/score_ratio.py --students $here/scores/student8k-live-f0.01-a1-s*-60-s1000.json \
    --teacher $before/student8k-f0.01-a1-s*-60-s1000.json
echo "== live-teacher Sobolev over KL-only students"
python scripts/score_ratio.py --students $here/scores/student8k-live-f0.01-a1-s*-60-s1000.json \
    --teacher $before/student8k-f0.01-a0-s*-60-s1000.json
