#!/usr/bin/env bash
# Student-over-teacher game scores with 95% bootstrap intervals, each method's seeds pooled (session 13).
# Session 20 adds students trained with the paper's KL direction (--kl student-teacher; "rkl" in their names).
# Session 24 adds teacher-sized students (--student nature; "nature" in their names, runs in
# data/figure4/breakout-t5.75M-cos8k-warmup-nature-f0.1). Session 30 adds them with the falling weight ("nature-alin";
# session 24's high-drawing seed-0 student is kept as *nature-alin-session24*, outside these globs).
# Session 33 adds three more nature-half falling-weight students (seeds 3-5; "-rep-" in their names, outside the
# session-32 globs, which keep seeds 0-2).
# Students: 60 games on seeds 1000-1005 (this folder) plus, where they are the same trained students, the 30 games
# on seeds 0-5 published with their grid. The 8000-step alpha-0 and alpha-1 students with checkpoints are a rerun
# of the published grid's (data/figure4/breakout-t5.75M-cos8k-warmup-ckpt), so only their 60-game files count here.
# Teacher: its card's 30 games plus 120 per mode on seeds 1000-1005 (this folder).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=docs/game-scores-breakout-f0.1
teacher="teachers/cards/breakout.json $here/teacher-sample-120-s1000.json $here/teacher-greedy-120-s1000.json"
g20=docs/figure4-breakout-t5.75M-cos20k-warmup
g8=docs/figure4-breakout-t5.75M-cos8k-warmup  # its rerun-f0.05-f0.1/ holds the alpha-0.3 students' games
for a in 1 0; do
    echo "== 20,000 steps, alpha $a"
    python scripts/score_ratio.py --students $g20/rollout-f0.1-a$a-s*.json $here/student20k-f0.1-a$a-s*.json \
        --teacher $teacher --json $here/ratio-20k-a$a.json
    echo "== 8000 steps, alpha $a"
    python scripts/score_ratio.py --students $here/student8k-f0.1-a$a-s*.json \
        --teacher $teacher --json $here/ratio-8k-a$a.json
done
echo "== 8000 steps, alpha 0.3"
python scripts/score_ratio.py --students $g8/rerun-f0.05-f0.1/rollout-f0.1-a0.3-s*.json $here/student8k-f0.1-a0.3-s*.json \
    --teacher $teacher --json $here/ratio-8k-a0.3.json
echo "== 20,000 steps, alpha 0.3 (CPU-trained; 30 games on seeds 0-5 and 60 on seeds 1000-1005, both in this folder)"
python scripts/score_ratio.py --students $here/rollout20k-f0.1-a0.3-s*.json $here/student20k-f0.1-a0.3-s*.json \
    --teacher $teacher --json $here/ratio-20k-a0.3.json
echo "== Sobolev (alpha 1) over KL-only, 20,000 steps (the KL-only students as the reference)"
python scripts/score_ratio.py --students $g20/rollout-f0.1-a1-s*.json $here/student20k-f0.1-a1-s*.json \
    --teacher $g20/rollout-f0.1-a0-s*.json $here/student20k-f0.1-a0-s*.json --json $here/ratio-20k-a1-over-a0.json
echo "== Sobolev (alpha 1) over KL-only, 8000 steps"
python scripts/score_ratio.py --students $here/student8k-f0.1-a1-s*.json \
    --teacher $here/student8k-f0.1-a0-s*.json --json $here/ratio-8k-a1-over-a0.json
echo "== the paper's KL direction (distill-train --kl student-teacher), 8000 steps, alpha 1 (session 20)"
python scripts/score_ratio.py --students $here/student8k-rkl-f0.1-a1-s*.json \
    --teacher $teacher --json $here/ratio-8k-rkl-a1.json
echo "== the same, alpha 0"
python scripts/score_ratio.py --students $here/student8k-rkl-f0.1-a0-s*.json \
    --teacher $teacher --json $here/ratio-8k-rkl-a0.json
echo "== alpha 1: KL(student || teacher) over KL(teacher || student), the default direction as the reference"
python scripts/score_ratio.py --students $here/student8k-rkl-f0.1-a1-s*.json \
    --teacher $here/student8k-f0.1-a1-s*.json --json $here/ratio-8k-rkl-a1-over-fwd-a1.json
echo "== the teacher-sized student (--student nature), 8000 steps, alpha 1 (session 24)"
python scripts/score_ratio.py --students $here/student8k-nature-f0.1-a1-s*.json \
    --teacher $teacher --json $here/ratio-8k-nature-a1.json
echo "== the same, alpha 0"
python scripts/score_ratio.py --students $here/student8k-nature-f0.1-a0-s*.json \
    --teacher $teacher --json $here/ratio-8k-nature-a0.json
echo "== nature student: Sobolev (alpha 1) over KL-only"
python scripts/score_ratio.py --students $here/student8k-nature-f0.1-a1-s*.json \
    --teacher $here/student8k-nature-f0.1-a0-s*.json --json $here/ratio-8k-nature-a1-over-a0.json
echo "== alpha 1: the nature student over the paper student"
python scripts/score_ratio.py --students $here/student8k-nature-f0.1-a1-s*.json \
    --teacher $here/student8k-f0.1-a1-s*.json --json $here/ratio-8k-nature-over-paper-a1.json
echo "== alpha 0: the nature student over the paper student"
python scripts/score_ratio.py --students $here/student8k-nature-f0.1-a0-s*.json \
    --teacher $here/student8k-f0.1-a0-s*.json --json $here/ratio-8k-nature-over-paper-a0.json
echo "== the teacher-sized student with the falling weight (--student nature --alpha-schedule linear), 8000 steps (session 30)"
python scripts/score_ratio.py --students $here/student8k-nature-alin-f0.1-a1-s*.json \
    --teacher $teacher --json $here/ratio-8k-nature-alin-a1.json
echo "== the same over the nature KL-only students"
python scripts/score_ratio.py --students $here/student8k-nature-alin-f0.1-a1-s*.json \
    --teacher $here/student8k-nature-f0.1-a0-s*.json --json $here/ratio-8k-nature-alin-a1-over-a0.json
echo "== the teacher-sized student with a constant alpha 0.3 (--student nature --alpha 0.3), 8000 steps (session 31)"
python scripts/score_ratio.py --students $here/student8k-nature-a0.3-f0.1-a0.3-s[012]-60-s1000.json \
    --teacher $teacher --json $here/ratio-8k-nature-a0.3.json
echo "== the same over the nature KL-only students"
python scripts/score_ratio.py --students $here/student8k-nature-a0.3-f0.1-a0.3-s[012]-60-s1000.json \
    --teacher $here/student8k-nature-f0.1-a0-s*.json --json $here/ratio-8k-nature-a0.3-over-a0.json
echo "== the same students, 60 more sampled games each on seeds 2000-2005 (session 31)"
python scripts/score_ratio.py --students $here/student8k-nature-a0.3-s2000-f0.1-a0.3-s*-sample-60.json \
    --teacher $teacher --json $here/ratio-8k-nature-a0.3-s2000-sample.json
python scripts/score_ratio.py --students $here/student8k-nature-a0.3-s2000-f0.1-a0.3-s*-sample-60.json \
    --teacher $here/student8k-nature-f0.1-a0-s*.json --json $here/ratio-8k-nature-a0.3-s2000-sample-over-a0.json
echo "== both sets pooled: 120 sampled games per student"
python scripts/score_ratio.py --students $here/student8k-nature-a0.3-s2000-f0.1-a0.3-s*-sample-60.json \
    $here/student8k-nature-a0.3-f0.1-a0.3-s[012]-60-s1000.json --teacher $teacher --json $here/ratio-8k-nature-a0.3-pooled-360-sample.json
echo "== a replication decided after the first three: seeds 3-5 trained with distill-train, same settings (session 31)"
python scripts/score_ratio.py --students $here/student8k-nature-a0.3-f0.1-a0.3-s[345]-60-s1000.json \
    --teacher $teacher --json $here/ratio-8k-nature-a0.3-s345.json
echo "== all six students"
python scripts/score_ratio.py --students $here/student8k-nature-a0.3-f0.1-a0.3-s*-60-s1000.json \
    --teacher $teacher --json $here/ratio-8k-nature-a0.3-6seeds.json
python scripts/score_ratio.py --students $here/student8k-nature-a0.3-f0.1-a0.3-s*-60-s1000.json \
    --teacher $here/student8k-nature-f0.1-a0-s*.json --json $here/ratio-8k-nature-a0.3-6seeds-over-a0.json
echo "== nature-half (the teacher's convs, 256 hidden units, 0.88M), alpha 0.3, 8000 steps (session 31)"
python scripts/score_ratio.py --students $here/student8k-nature-half-f0.1-a0.3-s*.json \
    --teacher $teacher --json $here/ratio-8k-nature-half-a0.3.json
echo "== the same, alpha 0"
python scripts/score_ratio.py --students $here/student8k-nature-half-f0.1-a0-s*.json \
    --teacher $teacher --json $here/ratio-8k-nature-half-a0.json
echo "== nature-half: alpha 0.3 over KL-only"
python scripts/score_ratio.py --students $here/student8k-nature-half-f0.1-a0.3-s*.json \
    --teacher $here/student8k-nature-half-f0.1-a0-s*.json --json $here/ratio-8k-nature-half-a0.3-over-a0.json
echo "== alpha 0.3: nature-half over nature (seeds 0-2)"
python scripts/score_ratio.py --students $here/student8k-nature-half-f0.1-a0.3-s*.json \
    --teacher $here/student8k-nature-a0.3-f0.1-a0.3-s[012]-60-s1000.json --json $here/ratio-8k-nature-half-over-nature-a0.3.json
echo "== nature-half alpha 0.3, three more students (seeds 3-5, sampled games only; session 31)"
python scripts/score_ratio.py --students $here/student8k-nature-half-rep-f0.1-a0.3-s*-sample-60-s1000.json \
    --teacher $teacher --json $here/ratio-8k-nature-half-a0.3-s345-sample.json
echo "== nature-half alpha 0.3, all six students"
python scripts/score_ratio.py --students $here/student8k-nature-half-rep-f0.1-a0.3-s*-sample-60-s1000.json \
    $here/student8k-nature-half-f0.1-a0.3-s*.json --teacher $teacher --json $here/ratio-8k-nature-half-a0.3-6seeds.json
echo "== nature-half, alpha 1 falling to 0 (--alpha-schedule linear), 8000 steps (session 32)"
python scripts/score_ratio.py --students $here/student8k-nature-half-alin-f0.1-a1-s*.json \
    --teacher $teacher --json $here/ratio-8k-nature-half-alin-a1.json
echo "== nature-half: the falling weight over KL-only"
python scripts/score_ratio.py --students $here/student8k-nature-half-alin-f0.1-a1-s*.json \
    --teacher $here/student8k-nature-half-f0.1-a0-s*.json --json $here/ratio-8k-nature-half-alin-a1-over-a0.json
echo "== the falling weight: nature-half over nature"
python scripts/score_ratio.py --students $here/student8k-nature-half-alin-f0.1-a1-s*.json \
    --teacher $here/student8k-nature-alin-f0.1-a1-s[012]-60-s1000.json --json $here/ratio-8k-nature-half-over-nature-alin.json
echo "== nature-half alpha 1 falling to 0, three more students (seeds 3-5, decided after the first three; session 33)"
python scripts/score_ratio.py --students $here/student8k-nature-half-alin-rep-f0.1-a1-s*-60-s1000.json \
    --teacher $teacher --json $here/ratio-8k-nature-half-alin-a1-s345.json
echo "== nature-half alpha 1 falling to 0, all six students"
python scripts/score_ratio.py --students $here/student8k-nature-half-alin-rep-f0.1-a1-s*-60-s1000.json \
    $here/student8k-nature-half-alin-f0.1-a1-s*.json --teacher $teacher --json $here/ratio-8k-nature-half-alin-a1-6seeds.json
echo "== nature-half: the falling weight's six students over the three KL-only ones"
python scripts/score_ratio.py --students $here/student8k-nature-half-alin-rep-f0.1-a1-s*-60-s1000.json \
    $here/student8k-nature-half-alin-f0.1-a1-s*.json --teacher $here/student8k-nature-half-f0.1-a0-s*.json \
    --json $here/ratio-8k-nature-half-alin-a1-6seeds-over-a0.json
