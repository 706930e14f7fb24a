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
        description="Play N whole Atari games (unclipped scores, fixed seeds) with a teacher or a distilled student "
                    "(teacher alongside) and report mean, std, min and max score, for sampled and greedy actions.",
    )
    p.add_argument("--teacher", default=None,
                   help="shipped teacher by game name (e.g. Breakout) or a stable-baselines3 .zip path; with --student, "
                        "the teacher shown alongside (default: the one that recorded the student's dataset). Loading "
                        "a .zip unpickles code from it: only load files you trust")
    p.add_argument("--student", type=Path, default=None, help="a distill-train run directory to evaluate")
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


def _play_all(name: str, policy, game: str, args, device) -> dict:
    modes = MODES if args.mode == "both" else (args.mode,)
    summaries = {}
    for mode in modes:
        s = play(policy, game, args.episodes, mode=mode, seed=args.seed, envs=args.envs, device=device).summary()
        summaries[mode] = s
        print(f"{game} {name:7s} {mode:6s}: mean {s['mean_return']:.1f} ± {s['std_return']:.1f} "
              f"(min {s['min_return']:.0f}, max {s['max_return']:.0f}) over {s['episodes']} games")
    primary = summaries[modes[0]]
    return {"mean_return": primary["mean_return"], "std_return": primary["std_return"],
            "episodes": primary["episodes"], "mode": primary["mode"], "modes": summaries}


def _ratios(student_modes: dict, teacher_modes: dict) -> dict:
    """Student-over-teacher score per mode with its bootstrap interval: 30 games each leave a wide one."""
    from distill.scores import ratio_interval

    ratios = {}
    for mode, summary in student_modes.items():
        if teacher_modes[mode]["mean_return"] <= 0 or summary["episodes"] < 2:
            continue
        ratio = ratio_interval(summary["returns"], teacher_modes[mode]["returns"])
        ratios[mode] = ratio.as_dict()
        print(f"student / teacher, {mode}: {ratio}")
    return ratios


@cli_entry
def main(argv: list[str] | None = None) -> int:
    from teachers.load import load_teacher

    args = build_parser().parse_args(argv)
    if args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}")
    if args.envs < 1:
        raise UserError(f"--envs must be at least 1, got {args.envs}")
    if args.no_held_out and args.dataset is not None:
        raise UserError("--dataset asks for the held-out metrics and --no-held-out skips them; pass one of the two")
    device = resolve_device(args.device)
    game = atari.canonical_game(args.game) if args.game else None
    report: dict = {"seed": args.seed}
    if args.student is not None:
        from distill.train import evaluate_states, load_student

        student, info = load_student(args.student, args.checkpoint, device)
        student_game = info["config"]["game"]
        if game is not None and game != student_game:
            raise UserError(f"the student in {args.student} plays {student_game}, not {game}")
        game = student_game
        print(f"evaluating student {args.student} ({info['config']['student']}, alpha {info['config']['alpha']}, "
              f"fraction {info['config']['fraction']})", file=sys.stderr)
        report.update({"game": game, "policy": "student", "run": str(args.student), "checkpoint": args.checkpoint,
                       "config": info["config"]})
        report.update(_play_all("student", student, game, args, device))
        dataset = args.dataset or Path(info["config"]["dataset"])
        if args.dataset is not None or dataset.exists():
            from distill.data import recording_episodes, split_by_episodes

            episodes, attrs = recording_episodes(dataset)
            if str(attrs["game"]) != game:
                raise UserError(f"{dataset} is a recording of {attrs['game']}, not {game}")
            if not args.no_held_out:
                split = split_by_episodes(episodes, info["config"]["fraction"], info["config"]["split_seed"])
                report["held_out"] = evaluate_states(student, dataset, split.test_rows, device)
                print(f"held-out on {dataset}: action error {report['held_out']['test_action_error']:.4f}, "
                      f"KL {report['held_out']['test_kl']:.4f} nats over {len(split.test_rows)} states")
            teacher_spec = args.teacher or str(attrs["teacher_path"])
        else:
            teacher_spec = args.teacher or game
        if not args.no_teacher:
            teacher = load_teacher(teacher_spec, game=game, temperature=args.temperature, device=device)
            distilled_from = info.get("teacher_sha256")
            if distilled_from and teacher.sha256 != distilled_from:
                print(f"warning: the teacher played alongside ({teacher.path}, sha256 {teacher.sha256[:12]}) is not "
                      f"the one this student was distilled from ({distilled_from[:12]}); pass that one with --teacher",
                      file=sys.stderr)
            report["teacher"] = {"path": teacher.path, "sha256": teacher.sha256,
                                 "distilled_from": teacher.sha256 == distilled_from,
                                 **_play_all("teacher", teacher, game, args, device)}
            report["student_over_teacher"] = report["mean_return"] / report["teacher"]["mean_return"] \
                if report["teacher"]["mean_return"] else None
            report["student_over_teacher_by_mode"] = _ratios(report["modes"], report["teacher"]["modes"])
        policy = student
    else:
        if args.teacher is None and game is None:
            raise UserError("say what to evaluate: --teacher GAME_OR_PATH (e.g. --teacher Breakout) or --student RUNDIR")
        teacher = load_teacher(args.teacher if args.teacher is not None else game, game=game,
                               temperature=args.temperature, device=device)
        print(f"evaluating {teacher.describe()}", file=sys.stderr)
        game = teacher.game
        report.update({"game": game, "policy": "teacher", "path": teacher.path, "sha256": teacher.sha256})
        report.update(_play_all("teacher", teacher, game, args, device))
        policy = teacher
    if args.video is not None:
        from distill.video import record_gif

        record_gif(policy, game, args.video, seed=args.seed, device=device)
        print(f"wrote {args.video}", file=sys.stderr)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
