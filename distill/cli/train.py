"""``distill-train``: distil a recorded teacher into a student with KL + alpha * Sobolev."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from distill.device import resolve_device
from distill.errors import cli_entry
from distill.losses import KL_DIRECTIONS, SOBOLEV_DISTANCES
from distill.students import STUDENTS
from distill.train import ALPHA_SCHEDULES, LR_SCHEDULES, TrainConfig, find_latest_recording, train


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that say how each student is trained; shared with scripts/figure4.py so that a grid can set
    everything a single run can, with the same defaults, choices and help."""
    d = TrainConfig(dataset="", game="Breakout")
    p.add_argument("--student", choices=tuple(STUDENTS), default=d.student, help="student network (default paper)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"states per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr})")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=d.lr_schedule,
                   help="constant, or cosine decay from --lr to 0 at --steps (default %(default)s)")
    p.add_argument("--lr-warmup", type=float, default=d.lr_warmup,
                   help="share of --steps over which the rate rises linearly from 0 to --lr; 0 = none, as in the "
                        "grids made before it existed (default %(default)s)")
    p.add_argument("--alpha-schedule", choices=ALPHA_SCHEDULES, default=d.alpha_schedule,
                   help="constant (the paper), or linear: the Sobolev weight falls from --alpha to 0 at --steps "
                        "(default %(default)s; alpha 0 ignores it)")
    p.add_argument("--alpha-until", type=float, default=d.alpha_until,
                   help="with --alpha-schedule linear: the share of --steps at which the weight reaches 0; the "
                        "steps after it are plain KL distillation (default %(default)s: the last step)")
    p.add_argument("--kl", choices=KL_DIRECTIONS, default=d.kl,
                   help="KL direction of the value term (default teacher-student: KL(pi* || pi))")
    p.add_argument("--distance", choices=SOBOLEV_DISTANCES, default=d.distance,
                   help="distance between gradient projections g, g* (default cosine: 1 - cos(g, g*); relative: "
                        "||g-g*||^2 / ||g*||^2; see docs/figure4.md)")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between held-out evaluations")
    p.add_argument("--test-cap", type=int, default=d.test_cap,
                   help="held-out states used at each periodic evaluation (the final one uses all)")
    p.add_argument("--life-loss-weight", type=float, default=d.life_loss_weight,
                   help="draw training states from the last --life-loss-window steps before a lost life this many "
                        "times as often as others; 1 = uniform (default). Needs the recording's lives "
                        "(distill-add-lives FILE for recordings made before they were stored)")
    p.add_argument("--life-loss-window", type=int, default=d.life_loss_window,
                   help="steps up to a lost life that --life-loss-weight favours (default %(default)s)")
    p.add_argument("--teacher", default=None,
                   help="the recording's teacher (.zip or game name): draw fresh random directions every step from "
                        "it instead of using the recorded ones (the paper's estimator; slower; alpha 0 ignores it). "
                        "Loading a .zip unpickles code: only name files you trust")
    p.add_argument("--split-seed", type=int, default=d.split_seed, help="seed of the episode shuffle for the split")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")


def training_config(args: argparse.Namespace, dataset: str | Path, game: str, alpha: float, fraction: float,
                    seed: int) -> TrainConfig:
    """One run's settings: its own alpha, fraction and seed, and the flags of ``add_training_arguments``.
    A KL-only run has no gradient term, so it stores that term's settings at their neutral values and stays
    reusable beside any Sobolev grid."""
    return TrainConfig(dataset=str(dataset), game=game, alpha=alpha, fraction=fraction, seed=seed,
                       student=args.student, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                       lr_schedule=args.lr_schedule, lr_warmup=args.lr_warmup, kl=args.kl, distance=args.distance,
                       eval_every=args.eval_every, test_cap=args.test_cap, split_seed=args.split_seed,
                       teacher=args.teacher, life_loss_weight=args.life_loss_weight,
                       life_loss_window=args.life_loss_window,
                       alpha_schedule=args.alpha_schedule,
                       alpha_until=args.alpha_until).without_unused_settings()


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig(dataset="", game="Breakout")
    p = argparse.ArgumentParser(
        prog="distill-train",
        description="Train a student on a recording: KL(teacher || student) + alpha * distance between the student's "
                    "and the teacher's projected input gradients grad_s <log pi(s), v>. Splits by whole episodes.",
    )
    p.add_argument("--dataset", type=Path, default=None,
                   help="recording (.h5); default: the newest complete recording of --game under data/ "
                        "(by the game and finish time stored in each file)")
    p.add_argument("--game", default="Breakout", help="game, used to find the recording (default Breakout)")
    p.add_argument("--alpha", type=float, default=d.alpha, help="weight of the Sobolev term; 0 = plain KL (default 1)")
    p.add_argument("--fraction", type=float, default=d.fraction,
                   help="share of the states (whole episodes) used for training, in (0,1) (default 0.1)")
    p.add_argument("--seed", type=int, default=d.seed, help="initialisation and batch seed")
    add_training_arguments(p)
    p.add_argument("--out", type=Path, default=None,
                   help="run directory (default data/runs/<game>-<student>-a<alpha>-f<fraction>-s<seed>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--force", action="store_true", help="delete an existing run directory and start over")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    from distill.atari import canonical_game

    args = build_parser().parse_args(argv)
    game = canonical_game(args.game)
    # the flags first, so that a bad one is named even where no recording has been made yet
    cfg = training_config(args, args.dataset or "", game, args.alpha, args.fraction, args.seed)
    cfg.validate()
    device = resolve_device(args.device)
    # recorded-direction Sobolev training needs a recording with gradients; KL-only and live-teacher runs take any
    dataset = args.dataset or find_latest_recording(game, needs_gradients=args.alpha > 0 and not args.teacher)
    cfg = dataclasses.replace(cfg, dataset=str(dataset))
    default_name = f"{game.lower()}-{args.student}-a{args.alpha:g}-f{args.fraction:g}-s{args.seed}"
    out = args.out or Path("data/runs") / default_name
    print(f"distilling {dataset} into a '{args.student}' student on {device} -> {out}", file=sys.stderr)
    final = train(cfg, out, device, resume=args.resume, force=args.force)
    print(json.dumps(final, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
