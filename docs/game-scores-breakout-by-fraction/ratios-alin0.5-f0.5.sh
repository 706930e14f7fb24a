#!/usr/bin/env bash
# Breakout 50%, `nature` student, 20,000 steps, alpha 1 falling to 0 by half the run (--alpha-until 0.5; session 35):
# 60 sampled games per student on seeds 1000-1005 (distill-eval --student RUN --no-teacher --no-held-out --episodes 60
# --envs 6 --seed 1000 --mode sample), runs in data/figure4/breakout-t5.75M-cos20k-warmup-nature-alin0.5. KL-only:
# the one 50% nature student with a checkpoint, seed 2 retrained in session 35.
# Teacher: its card's 30 games plus 120 per mode on seeds 1000-1005.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=docs/game-scores-breakout-by-fraction
f01=docs/game-scores-breakout-f0.1
teacher="teachers/cards/breakout.json $f01/teacher-sample-120-s1000.json $f01/teacher-greedy-120-s1000.json"
echo "== alpha 1 falling to 0 by half the run, against the teacher"
python scripts/score_ratio.py --students $here/student20k-nature-alin0.5-f0.5-a1-s*-60-s1000-sample.json --teacher $teacher
echo "== KL-only seed 2 (retrained), against the teacher"
python scripts/score_ratio.py --students $here/student20k-nature-f0.5-a0-s2-retrained-60-s1000-sample.json --teacher $teacher
