#!/usr/bin/env bash
# Pong students in play (session 19): 60 games per mode and student on seeds 1000-1005 (distill-eval --student RUN
# --no-teacher --episodes 60 --envs 6 --seed 1000 --mode both), the teacher likewise (distill-eval --teacher Pong ...).
# KL-only and constant alpha 1: docs/figure4-pong-t1.94M-cos8k-ckpt (cells trained again with checkpoints); alpha 1
# falling to 0: docs/figure4-pong-t1.94M-cos8k-alin (at 0.1 its rerun, docs/figure4-pong-t1.94M-cos8k-alin-rerun-f0.1:
# the published cell's students were not kept; at 0.5 students trained again in session 22 with checkpoints, not the
# published cell's). 1% is 2.0% of the states (one training episode). Pong scores run
# from -21 to 21, so methods are compared by the difference of mean scores in points (score_ratio.py --difference).
# Fractions (and methods) are reported as far as their students have been played.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=docs/game-scores-pong
for f in 0.01 0.05 0.1 0.5; do
    compgen -G "$here/student8k-f$f-a0-s*-60-s1000.json" > /dev/null || continue
    kl="$here/student8k-f$f-a0-s*-60-s1000.json"
    constant="$here/student8k-f$f-a1-s*-60-s1000.json"
    falling="$here/student8k-alin-f$f-a1-s*-60-s1000.json"
    for name in kl constant falling; do
        compgen -G "${!name}" > /dev/null || continue
        echo "== fraction $f, $name, against the teacher"
        python scripts/score_ratio.py --difference --students ${!name} --teacher $here/teacher-60-s1000.json
    done
    compgen -G "$constant" > /dev/null || continue  # constant-weight students not played at this fraction yet
    echo "== fraction $f, constant alpha 1 over KL-only"
    python scripts/score_ratio.py --difference --students $constant --teacher $kl
    compgen -G "$falling" > /dev/null || continue  # falling-weight students not played at this fraction yet
    echo "== fraction $f, alpha 1 falling to 0 over KL-only"
    python scripts/score_ratio.py --difference --students $falling --teacher $kl
    echo "== fraction $f, alpha 1 falling to 0 over constant alpha 1"
    python scripts/score_ratio.py --difference --students $falling --teacher $constant
done
