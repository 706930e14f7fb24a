"""``distill-eval``: play whole games with a teacher (or student) and report game scores."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from distill.environment import atari
from distill.environment.device import resolve_device
from distill.environment.errors import UserError, cli_entry
from distill.evaluation.report import evaluate_student, evaluate_teacher
from distill.evaluation.rollout import MODES
from teachers.sb3 import TRUST_HELP


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-eval",
        description="Play N whole Atari games (unclipped scores, fixed seeds) with a teacher or a distilled student "
                    "(teacher alongside) and report mean, std, min and max score, for sampled and greedy actions.",
    )
    p.add_argument("--teacher", default=None,
                   help="teacher: a game name (shipped), a stable-baselines3 .zip, a zoo or hub folder, a CleanRL "
                        "checkpoint, a TorchScript file (--trust-checkpoint); with --student, the teacher shown "
                        "alongside (default: the one that recorded the student's dataset; for a multi-game student, "
                        "one per game, comma-separated, in the run's game order)")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.add_argument("--student", type=Path, default=None,
                   help="a distill-train run directory to evaluate; a multi-game student plays each of its games "
                        "(or only --game), each with its teacher alongside")
    p.add_argument("--checkpoint", choices=("best", "latest"), default="latest",
                   help="which student checkpoint: latest (default; the model metrics.json describes) or best (lowest "
                        "test KL at a periodic evaluation: chosen on held-out episodes, so its held-out numbers "
                        "are optimistic)")
    p.add_argument("--dataset", type=Path, default=None,
                   help="with --student: also report held-out action error and KL on this recording "
                        "(default: the run's own dataset, if it still exists)")
    p.add_argument("--no-held-out", action="store_true",
                   help="with --student: skip the held-out metrics (they take about a minute for a large student on a "
                        "100K recording; game-score sweeps do not need them)")
    p.add_argument("--no-teacher", action="store_true", help="with --student: do not play the teacher alongside")
    p.add_argument("--game", default=None, help="game to play (default: the teacher's or student's game)")
    p.add_argument("--episodes", type=int, default=30, help="games per action-selection mode (default 30)")
    p.add_argument("--mode", choices=(*MODES, "both"), default="both",
                   help="sample from the policy, act greedily (argmax), or both (default)")
    p.add_argument("--envs", type=int, default=4, help="games played in parallel (default 4)")
    p.add_argument("--seed", type=int, default=0, help="environment and sampling seed (default 0)")
    p.add_argument("--temperature", type=float, default=0.01, help="Q / temperature for DQN-family teachers")
    p.add_argument("--video", type=Path, default=None, help="write one greedy game of the evaluated policy as a GIF")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}")
    if args.envs < 1:
        raise UserError(f"--envs must be at least 1, got {args.envs}")
    if args.seed < 0:
        raise UserError(f"--seed must be 0 or more, got {args.seed}")
    if args.no_held_out and args.dataset is not None:
        raise UserError("--dataset asks for the held-out metrics and --no-held-out skips them; pass one of the two")
    device = resolve_device(args.device)
    game = atari.canonical_game(args.game) if args.game else None
    play = dict(episodes=args.episodes, mode=args.mode, seed=args.seed, envs=args.envs,
                temperature=args.temperature, device=device, trust_checkpoint=args.trust_checkpoint)
    if args.student is not None:
        report, policy = evaluate_student(args.student, args.checkpoint, held_out=not args.no_held_out,
                                          dataset=args.dataset, teacher=args.teacher,
                                          with_teacher=not args.no_teacher, game=game, **play)
    else:
        report, policy = evaluate_teacher(args.teacher, game, **play)
    if args.video is not None:
        from distill.evaluation.video import record_gif

        if "games" in report:  # a multi-game student: one GIF per game, named after it
            for game_name in report["games"]:
                path = args.video.with_name(f"{args.video.stem}-{game_name.lower()}{args.video.suffix or '.gif'}")
                record_gif(policy.for_game(game_name), game_name, path, seed=args.seed, device=device)
                print(f"wrote {path}", file=sys.stderr)
        else:
            record_gif(policy, report["game"], args.video, seed=args.seed, device=device)
            print(f"wrote {args.video}", file=sys.stderr)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
