"""``distill-quickstart``: the whole pipeline in minutes on a laptop's CPU, with a result worth looking at.

Record a small recording with the shipped teacher, train a KL-only and a Sobolev student side by side on a small
share of it (the low-data setting where Sobolev training helps most), then print one table: held-out action error
and KL of both students, and their game scores beside the teacher's. Resumable: finished steps are reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from distill.environment.errors import RERUN_HINT, UserError, cli_entry

METHODS = {"KL only": 0.0, "Sobolev": 1.0}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="distill-quickstart", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", default="Breakout", help="game with a shipped teacher (default Breakout)")
    p.add_argument("--states", type=int, default=10_000, help="states to record (default 10000)")
    p.add_argument("--fraction", type=float, default=0.1,
                   help="share of the recording's episodes used for training (default 0.1: about 1,000 states)")
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps per student (default 2000)")
    p.add_argument("--episodes", type=int, default=8, help="games each policy plays, sampled actions (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the recording, the students and the games")
    p.add_argument("--out", type=Path, default=Path("data/quickstart"), help="where everything goes")
    p.add_argument("--force", action="store_true", help="start over instead of reusing finished steps")
    return p


def _train_one(dataset: str, run_dir: str, alpha: float, fraction: float, steps: int, seed: int, force: bool) -> dict:
    """One student, in its own process with one torch thread (two side by side fill two cores)."""
    import torch

    from distill import api

    torch.set_num_threads(1)
    done = Path(run_dir) / "metrics.json"
    if done.exists() and not force:
        final = json.loads(done.read_text())
        if final.get("step") == steps:
            return final
    return api.train(dataset, run_dir, device="cpu", alpha=alpha, fraction=fraction, steps=steps, seed=seed,
                     eval_every=max(steps // 20, 1), resume=not force, force=force, progress=False)


def _steps_done(run_dir: Path) -> int:
    """The last step logged in a run's metrics.csv (for the combined progress bar)."""
    try:
        lines = (run_dir / "metrics.csv").read_text().splitlines()
        return int(lines[-1].split(",")[0]) if len(lines) > 1 else 0
    except (OSError, ValueError):
        return 0


def train_side_by_side(dataset: Path, out: Path, fraction: float, steps: int, seed: int, force: bool) -> dict:
    runs = {name: out / "runs" / f"a{alpha:g}-s{seed}" for name, alpha in METHODS.items()}
    with ProcessPoolExecutor(max_workers=len(METHODS), mp_context=get_context("spawn")) as pool:
        futures = {name: pool.submit(_train_one, str(dataset), str(runs[name]), alpha, fraction, steps, seed, force)
                   for name, alpha in METHODS.items()}
        with tqdm(total=steps * len(METHODS), desc="train KL-only and Sobolev", unit="step") as bar:
            while not all(f.done() for f in futures.values()):
                bar.n = sum(_steps_done(r) for r in runs.values())
                bar.refresh()
                time.sleep(1.0)
            bar.n = bar.total
        return {name: (runs[name], f.result()) for name, f in futures.items()}


@cli_entry(on_interrupt=RERUN_HINT)
def main(argv: list[str] | None = None) -> int:
    from distill import api
    from distill.environment import atari
    from distill.evaluation.report import play_policy
    from distill.recording.schema import open_recording
    from distill.training.runs import load_student, read_run_config

    args = build_parser().parse_args(argv)
    game = atari.canonical_game(args.game)
    if args.states < 100 or args.steps < 1 or args.episodes < 1 or not 0 < args.fraction < 1 or args.seed < 0:
        raise UserError("--states must be at least 100, --steps and --episodes at least 1, --fraction in (0, 1), "
                        "--seed 0 or more")
    start = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    teacher = api.load_teacher(game)
    dataset = args.out / f"{game.lower()}-{args.states}-s{args.seed}.h5"
    try:
        with open_recording(dataset):
            reused = not args.force
    except UserError:
        reused = False
    if not reused:
        print(f"1/3 recording {args.states} states of {game} with the shipped teacher -> {dataset}", file=sys.stderr)
        api.record(teacher, args.states, dataset, envs=8, seed=args.seed, resume=dataset.exists() and not args.force,
                   force=args.force)
    print(f"2/3 training a KL-only and a Sobolev student on {args.fraction:g} of it, {args.steps} steps each",
          file=sys.stderr)
    results = train_side_by_side(dataset, args.out, args.fraction, args.steps, args.seed, args.force)
    print(f"3/3 playing {args.episodes} games with the teacher and each student (sampled actions)", file=sys.stderr)
    quiet = lambda _: None  # noqa: E731  (the table below says it all)
    play = dict(episodes=args.episodes, mode="sample", seed=args.seed, envs=4, echo=quiet)
    scores = {"teacher": play_policy(teacher, "teacher", game, **play)["mean_return"]}
    for name, (run, _) in results.items():
        scores[name] = play_policy(load_student(run)[0], name, game, **play)["mean_return"]
    info = read_run_config(results["Sobolev"][0] / "config.json")
    def episodes(n: int) -> str:
        return f"{n} episode{'s' * (n != 1)}"

    lines = [f"{game}: students trained on {info['train_states']} states ({episodes(info['train_episodes'])}), "
             f"held out {info['test_states']} states ({episodes(info['test_episodes'])}); {args.steps} steps, seed "
             f"{args.seed}; student {info['student_parameters']:,} parameters", "",
             "| policy | held-out action error | held-out KL (nats) | game score (mean of "
             f"{args.episodes}) | score / teacher |", "|---|---|---|---|---|",
             f"| teacher | - | - | {scores['teacher']:.1f} | 100% |"]
    for name, (_, final) in results.items():
        ratio = scores[name] / scores["teacher"] if scores["teacher"] else float("nan")
        lines.append(f"| {name} | {final['test_action_error']:.3f} | {final['test_kl']:.3f} | {scores[name]:.1f} | "
                     f"{ratio:.0%} |")
    lines += ["", f"Wall time: {time.time() - start:.0f} s. Runs in {args.out / 'runs'}; "
              f"`distill-eval --student RUN` for more games."]
    text = "\n".join(lines)
    (args.out / "results.md").write_text(text + "\n")
    (args.out / "results.json").write_text(json.dumps(
        {"scores": scores, "held_out": {n: f for n, (_, f) in results.items()}, "seconds": time.time() - start},
        indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
