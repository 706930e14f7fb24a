#!/usr/bin/env bash
# Every number of docs/figure4.md, "Weighing the second before a lost life" (session 14, 2 CPU cores).
# Needs data/ of that session: the Breakout recording with its lives (distill-add-lives), the uniform students
# (data/figure4/breakout-t5.75M-cos8k-warmup-ckpt) and the weighted ones (data/figure4/breakout-t5.75M-cos8k-warmup-lifeloss6).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=docs/life-loss-weight-breakout-f0.1
scores=docs/game-scores-breakout-f0.1
uniform=data/figure4/breakout-t5.75M-cos8k-warmup-ckpt/runs
weighted=data/figure4/breakout-t5.75M-cos8k-warmup-lifeloss6/runs
teacher="teachers/cards/breakout.json $scores/teacher-sample-120-s1000.json $scores/teacher-greedy-120-s1000.json"
for a in 1 0; do
    echo "== weight 6, alpha $a: against the teacher, then against the uniform students"
    python scripts/score_ratio.py --students $here/student8k-lifeloss6-f0.1-a$a-s*.json --teacher $teacher
    python scripts/score_ratio.py --students $here/student8k-lifeloss6-f0.1-a$a-s*.json \
        --teacher $scores/student8k-f0.1-a$a-s*.json
done
echo "== held-out error and KL before a lost life (16 steps) and elsewhere"
python scripts/heldout_by_life_loss.py $uniform/f0.1-a1-s{0,1,2} $uniform/f0.1-a0-s{0,1,2} \
    --json $here/heldout-by-life-loss-unweighted.json
python scripts/heldout_by_life_loss.py $weighted/f0.1-a1-s{0,1,2} $weighted/f0.1-a0-s{0,1,2} \
    --json $here/heldout-by-life-loss-weight6.json
echo "== the same split on the training states"
python $here/train_fit_by_life_loss.py $here/train-fit-by-life-loss.json
echo "== held-out measures against game scores, all 24 fraction-0.1 students with 60-game evaluations"
python scripts/offline_vs_play.py $scores/student*-60-s1000.json $here/student8k-lifeloss6-*-60-s1000.json \
    --json $here/offline-vs-play-f0.1.json
