#!/usr/bin/env python
"""Ship a trained teacher: copy its checkpoint to teachers/checkpoints/, evaluate it over N whole
games, and write its card (algorithm, steps, wall time, hardware, returns, sha256, command).

    python scripts/ship_teacher.py data/teachers/breakout_a2c_s0_run/step_1500000.zip --episodes 30
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


from distill.environment.errors import cli_entry
from distill.evaluation.rollout import play
from teachers.load import SHIPPED_DIR, file_sha256, load_teacher, read_meta

CARDS_DIR = SHIPPED_DIR.parent / "cards"
ALGO_SETTINGS = {
    "a2c": "rl-baselines3-zoo Atari settings (16 envs, n_steps 5, RMSpropTFLike lr 7e-4 eps 1e-5, ent 0.01, vf 0.25)",
    "ppo": "rl-baselines3-zoo Atari settings (8 envs, n_steps 128, 4 epochs, batch 256, lr 2.5e-4 and clip 0.1 "
           "held constant, ent 0.01, vf 0.5)",
}


@cli_entry
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="a .zip written by distill-teacher (final or step_N.zip)")
    p.add_argument("--episodes", type=int, default=30, help="evaluation games per mode (default 30)")
    p.add_argument("--envs", type=int, default=6, help="games in parallel")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--training-note", default="",
                   help="how the steps were run when it took several machines (goes on the card)")
    args = p.parse_args(argv)
    # load (and so check) the new checkpoint before the shipped one is replaced, so a bad file loses nothing
    game = load_teacher(args.checkpoint).game
    meta = read_meta(args.checkpoint)
    run_json = args.checkpoint.parent / "run.json"
    run = json.loads(run_json.read_text()) if run_json.exists() else {}
    algo = meta.get("algo", "a2c")
    dest = SHIPPED_DIR / f"{game.lower()}_{algo}.zip"
    if args.checkpoint.resolve() != dest.resolve():
        shutil.copyfile(args.checkpoint, dest)
    for previous in SHIPPED_DIR.glob(f"{game.lower()}_*.zip"):
        if previous.resolve() != dest.resolve():
            previous.unlink()  # one shipped teacher per game, removed only once its replacement is in place
    teacher = load_teacher(dest, game=game)
    results = {}
    for mode in ("sample", "greedy"):
        start = time.time()
        results[mode] = play(teacher, game, args.episodes, mode=mode, seed=args.seed, envs=args.envs).summary()
        results[mode]["seconds"] = round(time.time() - start, 1)
    sha = file_sha256(dest)
    # the checkpoint's own record; run.json may already describe a later step of the same run
    wall_time_s = float(meta.get("wall_time_s", run.get("wall_time_s", float("nan"))))
    s, g = results["sample"], results["greedy"]
    card = f"""# {game} teacher (`teachers/checkpoints/{dest.name}`)

| | |
|---|---|
| algorithm | stable-baselines3 {algo.upper()}, {ALGO_SETTINGS[algo]}, NatureCNN policy |
| environment steps | {meta.get('steps', 'unknown'):,} |
| wall time | {wall_time_s / 3600:.2f} h (training only, accumulated over resumes) |
| hardware | {run.get('hardware', 'unknown')} (last run) |
| how it was trained | {args.training_note or 'one machine, see hardware'} |
| seed | {meta.get('seed', 'unknown')} |
| sha256 | `{sha}` |
| evaluation, sampled actions | **{s['mean_return']:.1f} ± {s['std_return']:.1f}** (min {s['min_return']:.0f}, max {s['max_return']:.0f}) over {s['episodes']} whole games |
| evaluation, greedy actions | {g['mean_return']:.1f} ± {g['std_return']:.1f} (min {g['min_return']:.0f}, max {g['max_return']:.0f}) over {g['episodes']} whole games |

Evaluation: whole games (no episodic life, unclipped score, FIRE pressed after a lost life as the
training-time reset did), seeds {args.seed}..{args.seed + args.envs - 1}, {args.envs} games in parallel.
Reproduce the evaluation:

    distill-eval --teacher {game} --episodes {args.episodes} --envs {args.envs} --seed {args.seed}

Reproduce the training (then continue it with `--resume` and a larger `--steps`):

    distill-teacher --game {game} --algo {algo} --envs {run.get('config', {}).get('envs', 16)} --steps {meta.get('steps', 'N')} --seed {meta.get('seed', 0)}

Training command as run: `{run.get('command', 'unknown')}`
"""
    CARDS_DIR.mkdir(exist_ok=True)
    (CARDS_DIR / f"{game.lower()}.md").write_text(card)
    (CARDS_DIR / f"{game.lower()}.json").write_text(json.dumps({"game": game, "sha256": sha, "meta": meta,
                                                                 "run": run, "evaluation": results}, indent=2))
    print(card)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
