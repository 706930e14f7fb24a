#!/usr/bin/env bash
# A falling Sobolev weight (session 17): distill-train --alpha 1 --alpha-schedule linear, the default recipe
# otherwise (8000 steps, lr 1e-3 cosine with the 5% warm-up, paper student, recorded directions), on the first
# Breakout recording; KL-only students are the published grid's (figure4-breakout-t5.75M-cos8k-warmup). Second
# recording: the same with fresh directions from the live teacher, fraction 0.5. Game scores: 60 games per mode and
# student on seeds 1000-1005 (distill-eval --student RUN --no-teacher --episodes 60 --envs 6 --seed 1000 --mode both);
# teacher: its card plus 120 games per mode on those seeds. Prints every ratio quoted in docs/figure4.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=docs/figure4-breakout-t5.75M-cos8k-warmup-alin/scores
f01=docs/game-scores-breakout-f0.1
byf=docs/game-scores-breakout-by-fraction
rec1=docs/figure4-breakout-t5.75M-cos8k-warmup-live-rec1/scores
teacher="teachers/cards/breakout.json $f01/teacher-sample-120-s1000.json $f01/teacher-greedy-120-s1000.json"
for f in 0.01 0.05 0.1 0.5; do
    dir=$byf
    [[ $f == 0.1 ]] && dir=$f01
    linear="$here/student8k-alin-f$f-a1-s*-60-s1000.json"
    echo "== fraction $f, alpha 1 falling to 0, against the teacher"
    python scripts/score_ratio.py --students $linear --teacher $teacher
    echo "== fraction $f, alpha 1 falling to 0, over KL-only"
    python scripts/score_ratio.py --students $linear --teacher $dir/student8k-f$f-a0-s*-60-s1000.json
    echo "== fraction $f, alpha 1 falling to 0, over alpha 1 held constant"
    python scripts/score_ratio.py --students $linear --teacher $dir/student8k-f$f-a1-s*-60-s1000.json
done
for f in 0.1 0.5; do
    linear1="$here/student8k-rec1-live-alin-f$f-a1-s*-60-s1000.json"
    echo "== second recording, fraction $f, live teacher, alpha 1 falling to 0, against the teacher"
    python scripts/score_ratio.py --students $linear1 --teacher $teacher
    echo "== second recording, fraction $f, falling alpha over KL-only"
    python scripts/score_ratio.py --students $linear1 --teacher $rec1/student8k-rec1-kl-f$f-a0-s*-60-s1000.json
    echo "== second recording, fraction $f, falling alpha over constant alpha 1 (both live teacher)"
    python scripts/score_ratio.py --students $linear1 --teacher $rec1/student8k-rec1-live-f$f-a1-s*-60-s1000.json
done
