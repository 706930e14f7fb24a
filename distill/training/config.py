"""The options of a distillation run: one dataclass, from which every command builds its flags.

Each field of :class:`TrainConfig` carries its help text (and choices) in its metadata; :func:`add_arguments` turns
them into argparse flags and :func:`from_arguments` turns parsed flags back into a config. ``distill-train``,
``scripts/figure4.py`` and any sweep use these two, so an option is added in one place, with one default.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, dataclass, field, fields, replace

from distill.environment.errors import UserError
from distill.training.losses import KL_DIRECTIONS, SOBOLEV_DISTANCES
from distill.training.students import ACTIVATIONS, STUDENTS

LR_SCHEDULES = ("constant", "cosine")
ALPHA_SCHEDULES = ("constant", "linear")
EXPERIMENTAL_TITLE = "experimental (research settings that no recommended setting uses)"

# settings that shape only the gradient term, at the values a KL-only run (alpha 0) is stored with: such a run is the
# same run whatever they were set to, and stays reusable beside a Sobolev grid with any of them
GRADIENT_TERM_SETTINGS: dict[str, object] = {"teacher": None, "trust_checkpoint": False, "alpha_schedule": "constant",
                                             "alpha_until": 1.0}
# how a file is read, not what the run computes: never a reason to refuse --resume
NOT_COMPARED = ("trust_checkpoint", "max_memory")


def option(default, help: str, *, choices: tuple[str, ...] | None = None, experimental: bool = False,
           cli: bool = True):
    """A config field with what its command-line flag needs: help text, choices, and whether it is experimental."""
    return field(default=default, metadata={"help": help, "choices": choices, "experimental": experimental,
                                            "cli": cli})


@dataclass
class TrainConfig:
    """Everything that defines a distillation run (compared on ``--resume``)."""

    dataset: str = option("", "recording (.h5) to train on", cli=False)
    game: str = option("Breakout", "the recording's game", cli=False)
    # a multi-game run: one recording per game (dataset is then "" and game the games joined by "+")
    datasets: tuple[str, ...] = option((), "recordings of a multi-game student, one per game", cli=False)
    game_mix: str = option(
        "equal", "with several --dataset recordings: each game's share of every batch, as 'equal' or one weight per "
        "recording in --dataset order (e.g. 2,1,1)")
    alpha: float = option(1.0, "weight of the Sobolev term; 0 = plain KL distillation")
    fraction: float = option(0.1, "share of the states (whole episodes) used for training, in (0, 1)")
    student: str = option("paper", "student network", choices=tuple(STUDENTS))
    activation: str = option(
        "relu", "the student's hidden activation (relu: the paper's; silu, tanh, softplus: smooth, so that its input "
        "gradient is too)", choices=tuple(ACTIVATIONS))
    steps: int = option(8000, "optimiser steps")
    batch_size: int = option(64, "states per step")
    # measured on Breakout with the cosine decay: docs/results.md ("Learning rate")
    lr: float = option(1e-3, "Adam learning rate")
    lr_schedule: str = option("cosine", "constant, or cosine decay from --lr to 0 at --steps", choices=LR_SCHEDULES)
    # without it, lr 1e-3 killed the first conv layer of 2 of 3 KL-only Pong students in their first 200 steps
    lr_warmup: float = option(0.05, "share of --steps over which the rate rises linearly from 0 to --lr; 0 = none")
    alpha_schedule: str = option(
        "constant", "constant (the paper), or linear: the Sobolev weight falls from --alpha to 0 at "
        "--alpha-until of the steps, so that the gradient term shapes the student early and stops costing fit "
        "at the end (alpha 0 ignores it)", choices=ALPHA_SCHEDULES)
    alpha_until: float = option(
        1.0, "with --alpha-schedule linear: the share of --steps at which the weight reaches 0; the steps after it "
        "are plain KL distillation")
    distance: str = option(
        "cosine", "distance between the projected gradients g, g* (cosine: 1 - cos(g, g*); relative: "
        "||g-g*||^2 / ||g*||^2; the others as named)", choices=SOBOLEV_DISTANCES)
    teacher: str | None = option(
        None, "the recording's teacher (any --teacher source of distill-record): draw fresh random directions every "
        "step from it instead of the recorded ones (the paper's estimator; slower; alpha 0 ignores it)")
    trust_checkpoint: bool = option(
        False, "load --teacher with stable-baselines3's own loader (or as TorchScript): runs code from the file; "
        "only for files you trust")
    max_memory: float | None = option(
        None, "GiB the training rows may take in memory; rows that need more are read from the recording as training "
        "goes, in worker processes, with the same batches (default: half of this machine's memory)")
    eval_every: int = option(500, "steps between held-out evaluations")
    test_cap: int = option(5000, "held-out states used at each periodic evaluation (the final one uses all)")
    seed: int = option(0, "initialisation and batch seed")
    split_seed: int = option(0, "seed of the episode shuffle for the train/held-out split")
    kl: str = option("teacher-student", "KL direction of the value term (teacher-student: KL(pi* || pi))",
                     choices=KL_DIRECTIONS, experimental=True)
    life_loss_weight: float = option(
        1.0, "draw the training states in the last --life-loss-window steps before a lost life this many times as "
        "often as the others; 1 = uniform (the paper's sampling). Needs the recording's lives (distill-add-lives)",
        experimental=True)
    life_loss_window: int = option(16, "steps up to a lost life that --life-loss-weight favours", experimental=True)

    def without_unused_settings(self) -> TrainConfig:
        """This config, with the gradient term's settings at their stored values when alpha is 0 (they change
        nothing then), so that equal runs have equal configs."""
        return replace(self, **GRADIENT_TERM_SETTINGS) if self.alpha == 0 else self

    def validate(self) -> None:
        """Refuse impossible settings with a one-line error naming the flag."""
        if not 0.0 < self.fraction < 1.0:
            raise UserError(f"--fraction must be strictly between 0 and 1, got {self.fraction}")
        if self.alpha < 0 or not math.isfinite(self.alpha):
            raise UserError(f"--alpha must be >= 0, got {self.alpha}")
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise UserError(f"unknown --{_flag(f.name)} {getattr(self, f.name)!r}: --{_flag(f.name)} must be one "
                                f"of {', '.join(choices)}")
        if self.life_loss_weight <= 0 or not math.isfinite(self.life_loss_weight):
            raise UserError(f"--life-loss-weight must be positive (1 = uniform sampling), got {self.life_loss_weight}")
        for name in ("steps", "batch_size", "eval_every", "test_cap", "life_loss_window"):
            if getattr(self, name) < 1:
                raise UserError(f"--{_flag(name)} must be at least 1, got {getattr(self, name)}")
        if self.max_memory is not None and (not self.max_memory > 0 or not math.isfinite(self.max_memory)):
            raise UserError(f"--max-memory is in GiB and must be positive, got {self.max_memory}")
        if self.lr <= 0 or not math.isfinite(self.lr):
            raise UserError(f"--lr must be positive, got {self.lr}")
        if not 0.0 <= self.lr_warmup < 1.0 or not math.isfinite(self.lr_warmup):
            raise UserError(f"--lr-warmup is a share of --steps in [0, 1), got {self.lr_warmup}")
        if not 0.0 < self.alpha_until <= 1.0 or not math.isfinite(self.alpha_until):
            raise UserError(f"--alpha-until is a share of --steps in (0, 1], got {self.alpha_until}")
        for name in ("seed", "split_seed"):
            if getattr(self, name) < 0:
                raise UserError(f"--{_flag(name)} must be 0 or more, got {getattr(self, name)}")
        if self.game_mix != "equal":
            game_mix_weights(self.game_mix, max(len(self.datasets), 1))
        if self.alpha_until != 1.0 and self.alpha_schedule != "linear":
            raise UserError(f"--alpha-until {self.alpha_until:g} needs --alpha-schedule linear "
                            "(a constant weight never falls to 0)")


def game_mix_weights(game_mix: str, games: int) -> list[float]:
    """The relative batch shares of ``games`` games that ``--game-mix`` names (``equal``, or one weight per game)."""
    if game_mix == "equal":
        return [1.0] * games
    try:
        weights = [float(w) for w in game_mix.split(",")]
    except ValueError:
        weights = []
    if len(weights) != games or not all(w > 0 and math.isfinite(w) for w in weights):
        raise UserError(f"--game-mix {game_mix!r} must be 'equal' or {games} positive weights separated by commas, "
                        "one per --dataset recording (e.g. 2,1,1)")
    return weights


def batch_shares(batch_size: int, weights: list[float], world_size: int = 1) -> list[int]:
    """States per game in a global batch of ``batch_size``, in proportion to ``weights`` (largest remainders), in
    whole multiples of ``world_size`` so that every process gets the same share of every game."""
    units = batch_size // world_size
    exact = [units * w / sum(weights) for w in weights]
    counts = [math.floor(e) for e in exact]
    for i in sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])[:units - sum(counts)]:
        counts[i] += 1
    if min(counts) == 0:
        raise UserError(f"--batch-size {batch_size} leaves a game no state per batch with --game-mix weights "
                        f"{weights}{f' over {world_size} processes' if world_size > 1 else ''}; use a larger "
                        "--batch-size or more even weights")
    return [c * world_size for c in counts]


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _flag_type(f) -> type:
    """int, float or str, from the field's annotation (a string under ``from __future__ import annotations``)."""
    annotation = str(f.type)
    return int if annotation.startswith("int") else float if annotation.startswith("float") else str


def add_arguments(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """Add a flag for every command-line field of :class:`TrainConfig` (minus ``exclude``), with its default,
    choices and help; the experimental ones go into their own, clearly titled group."""
    experimental = parser.add_argument_group(EXPERIMENTAL_TITLE)
    for f in fields(TrainConfig):
        if not f.metadata.get("cli", True) or f.name in exclude:
            continue
        target = experimental if f.metadata.get("experimental") else parser
        default = f.default if f.default is not MISSING else None
        if str(f.type).startswith("bool"):  # a switch, off by default
            target.add_argument(f"--{_flag(f.name)}", action="store_true", help=f.metadata["help"])
            continue
        shown = "" if default is None else " (default %(default)s)"
        target.add_argument(f"--{_flag(f.name)}", type=_flag_type(f), default=default,
                            choices=f.metadata.get("choices"), help=f.metadata["help"] + shown)


def from_arguments(args: argparse.Namespace, **settings) -> TrainConfig:
    """The config that parsed flags (from :func:`add_arguments`) and ``settings`` (e.g. dataset, game, and the
    alpha, fraction and seed of one run of a grid) define. A KL-only run stores the gradient term's settings at
    their neutral values, so it stays reusable beside any Sobolev grid."""
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    return TrainConfig(**{**values, **settings}).without_unused_settings()
