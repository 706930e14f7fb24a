#!/usr/bin/env bash
# Breakout on a second, independent recording (session 16): 100,000 states of the shipped teacher with --seed 1,
# gradient-free (distill-record --game Breakout --states 100000 --projections 0 --seed 1), Sobolev students with
# fresh directions from the live teacher, KL-only students beside them. Held-out: table.md here. Game scores: 60
# games per mode and student on seeds 1000-1005 (distill-eval --student RUN --no-teacher --episodes 60 --envs 6
# --seed 1000 --mode both), every student; teacher: its card plus 120 games per mode on those seeds.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=docs/figure4-breakout-t5.75M-cos8k-warmup-live-rec1/scores
f01=docs/game-scores-breakout-f0.1
live0=docs/figure4-breakout-t5.75M-cos8k-warmup-live/scores
teacher="teachers/cards/breakout.json $f01/teacher-sample-120-s1000.json $f01/teacher-greedy-120-s1000.json"
for f in 0.1 0.01 0.5; do
    kl="$here/student8k-rec1-kl-f$f-a0-s*-60-s1000.json"
    live="$here/student8k-rec1-live-f$f-a1-s*-60-s1000.json"
    echo "== fraction $f, second recording: KL-only students against the teacher"
    python scripts/score_ratio.py --students $kl --teacher $teacher
    echo "== fraction $f, second recording: live-teacher Sobolev students against the teacher"
    python scripts/score_ratio.py --students $live --teacher $teacher
    echo "== fraction $f, second recording: live-teacher Sobolev over KL-only"
    python scripts/score_ratio.py --students $live --teacher $kl
done
echo "== fraction 0.1, both recordings (6 students a side): live-teacher Sobolev against the teacher"
python scripts/score_ratio.py --students $here/student8k-rec1-live-f0.1-a1-s*-60-s1000.json \
    $live0/student8k-live-f0.1-a1-s*-60-s1000.json --teacher $teacher
echo "== both recordings: KL-only against the teacher"
python scripts/score_ratio.py --students $here/student8k-rec1-kl-f0.1-a0-s*-60-s1000.json \
    $f01/student8k-f0.1-a0-s*-60-s1000.json --teacher $teacher
echo "== both recordings: live-teacher Sobolev over KL-only"
python scripts/score_ratio.py --students $here/student8k-rec1-live-f0.1-a1-s*-60-s1000.json \
    $live0/student8k-live-f0.1-a1-s*-60-s1000.json \
    --teacher $here/student8k-rec1-kl-f0.1-a0-s*-60-s1000.json $f01/student8k-f0.1-a0-s*-60-s1000.json
