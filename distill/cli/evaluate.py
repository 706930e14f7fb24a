"""``distill-eval``: play whole games with a teacher (or student) and report game scores."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from distill import atari
from distill.device import resolve_device
from distill.errors import UserError, cli_entry
from distill.rollout import MODES, play


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-eval",
        description="Play N whole Atari games (unclipped scores, fixed seeds) with a teacher and report mean, "
                    "std, min and max score, for sampled and greedy action selection.",
    )
    p.add_argument("--teacher", default=None,
                   help="shipped teacher by game name (e.g. Breakout) or a stable-baselines3 .zip path; "
                        "loading a .zip unpickles code from it: only load files you trust")
    p.add_argument("--game", default=None, help="game to play (default: the teacher's game)")
    p.add_argument("--episodes", type=int, default=30, help="games per action-selection mode (default 30)")
    p.add_argument("--mode", choices=(*MODES, "both"), default="both",
                   help="sample from the policy, act greedily (argmax), or both (default)")
    p.add_argument("--envs", type=int, default=4, help="games played in parallel (default 4)")
    p.add_argument("--seed", type=int, default=0, help="environment and sampling seed (default 0)")
    p.add_argument("--temperature", type=float, default=0.01, help="Q / temperature for DQN-family teachers")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    from teachers.load import load_teacher

    args = build_parser().parse_args(argv)
    if args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}")
    if args.envs < 1:
        raise UserError(f"--envs must be at least 1, got {args.envs}")
    device = resolve_device(args.device)
    game = atari.canonical_game(args.game) if args.game else None
    if args.teacher is None and game is None:
        raise UserError("say what to evaluate: --teacher GAME_OR_PATH (e.g. --teacher Breakout)")
    teacher = load_teacher(args.teacher if args.teacher is not None else game, game=game,
                           temperature=args.temperature, device=device)
    print(f"evaluating {teacher.describe()}", file=sys.stderr)
    modes = MODES if args.mode == "both" else (args.mode,)
    summaries = {}
    for mode in modes:
        result = play(teacher, teacher.game, args.episodes, mode=mode, seed=args.seed, envs=args.envs, device=device)
        s = result.summary()
        summaries[mode] = s
        print(f"{teacher.game} teacher, {mode:6s}: mean {s['mean_return']:.1f} ± {s['std_return']:.1f} "
              f"(min {s['min_return']:.0f}, max {s['max_return']:.0f}) over {s['episodes']} games")
    primary = summaries[modes[0]]
    report = {"game": teacher.game, "policy": "teacher", "path": teacher.path, "sha256": teacher.sha256,
              "seed": args.seed, "mean_return": primary["mean_return"], "std_return": primary["std_return"],
              "episodes": primary["episodes"], "mode": primary["mode"], "modes": summaries}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
