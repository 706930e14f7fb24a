#!/usr/bin/env bash
# Every number of docs/figure4.md, "Fresh directions from the live teacher" (session 15, 2 CPU cores).
# Held-out table and figure: table.md / figure4.png here (scripts/figure4.py --publish). Game scores: 60 games per
# mode and student on seeds 1000-1005 (distill-eval --student RUN --no-teacher --episodes 60 --envs 6 --seed 1000
# --mode both), against the teacher's 150 games per mode and against the recorded-direction students of the same
# recipe (docs/game-scores-breakout-by-fraction, docs/game-scores-breakout-f0.1). The gradient-match table needs the
# runs in data/ (data/figure4/breakout-t5.75M-cos8k-warmup-live and -ckpt).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=docs/figure4-breakout-t5.75M-cos8k-warmup-live
f01=docs/game-scores-breakout-f0.1
byfraction=docs/game-scores-breakout-by-fraction
teacher="teachers/cards/breakout.json $f01/teacher-sample-120-s1000.json $f01/teacher-greedy-120-s1000.json"
for f in 0.01 0.05 0.1 0.5; do
    live=( $here/scores/student8k-live-f$f-a1-s*-60-s1000.json )
    [[ -e ${live[0]} ]] || { echo "== fraction $f: no game scores of live-teacher students"; continue; }
    recorded=$byfraction
    [[ $f == 0.1 ]] && recorded=$f01
    echo "== fraction $f, live-teacher Sobolev students against the teacher"
    python scripts/score_ratio.py --students "${live[@]}" --teacher $teacher
    echo "== fraction $f, live-teacher over recorded-direction Sobolev students"
    python scripts/score_ratio.py --students "${live[@]}" --teacher $recorded/student8k-f$f-a1-s*-60-s1000.json
    echo "== fraction $f, live-teacher Sobolev over KL-only students"
    python scripts/score_ratio.py --students "${live[@]}" --teacher $recorded/student8k-f$f-a0-s*-60-s1000.json
done
if [[ -d data/figure4/breakout-t5.75M-cos8k-warmup-live/runs ]]; then
    live=data/figure4/breakout-t5.75M-cos8k-warmup-live/runs
    for f in 0.01 0.1; do
        recorded=data/figure4/breakout-t5.75M-cos8k-warmup-ckpt/runs
        [[ $f == 0.01 ]] && recorded=data/figure4/breakout-t5.75M-cos8k-warmup/runs
        echo "== gradient match on 512 held-out states, fraction $f: KL only, recorded directions, live teacher"
        python scripts/diagnose_sobolev.py --states 512 $recorded/f$f-a0-s{0,1,2} $recorded/f$f-a1-s{0,1,2} \
            $live/f$f-a1-s{0,1,2}
    done
fi
