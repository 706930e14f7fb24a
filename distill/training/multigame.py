"""Distil several games' teachers into one student: a shared trunk, one output layer per game, mixed batches.

:func:`train_multigame` reads as :func:`distill.training.loop.train` does: check the recordings (one per game),
split each by whole episodes, build the student, then at every step draw each game's share of the batch from its own
seeded generator, take KL + alpha * Sobolev per game (against that game's recorded or live projections), step Adam,
and every ``eval_every`` steps evaluate each game on its own held-out episodes, log and checkpoint. The held-out
metrics are reported per game and as their mean over games (each game counts once, whatever its test-set size).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from distill._version import __version__
from distill.environment.device import cpu_model
from distill.environment.errors import UserError
from distill.recording.schema import has_gradients, no_gradients_error
from distill.training.config import TrainConfig, batch_shares, game_mix_weights
from distill.training.data import Split, TrainingData, recording_episodes, split_by_episodes
from distill.training.distributed import Ranks, from_main, mean_over_ranks, wrap
from distill.training.loop import (_Logger, _capped_test_set, all_finite, checkpoint_evaluation, diverged,
                                   learning_rate, live_projections, recording_teacher, sobolev_weight)
from distill.training.losses import multigame_distillation_loss
from distill.training.metrics import evaluate_loaded, evaluate_states
from distill.training.runs import (METRIC_FIELDS, check_run_dir, load_checkpoint, start_metrics_log, start_over,
                                   writes_to)
from distill.training.streaming import GiB, StreamingData, default_memory_budget, draw_batch, training_bytes
from distill.training.students import count_parameters, make_multigame_student

PER_GAME_FIELDS = ("train_kl", "train_sobolev", "test_action_error", "test_kl")


def multigame_config(datasets: list[str | Path], **options) -> TrainConfig:
    """The config of a multi-game run on ``datasets`` (one recording per game, in that order)."""
    games = [str(recording_episodes(Path(d))[1]["game"]) for d in datasets]
    return TrainConfig(dataset="", game="+".join(games), datasets=tuple(str(d) for d in datasets),
                       **options).without_unused_settings()


def metric_fields(games: list[str]) -> list[str]:
    """metrics.csv's columns: the means over games under the single-game names, then each game's own."""
    return [*METRIC_FIELDS, *(f"{game}_{name}" for game in games for name in PER_GAME_FIELDS)]


@dataclass
class GameData:
    """One game of the run: its recording, split, training rows, capped test set, batch share and generator."""

    game: str
    dataset: Path
    attrs: dict
    split: Split
    batch: int  # states of this game in each global batch
    generator: torch.Generator
    data: TrainingData | StreamingData | None = None
    live: torch.nn.Module | None = None
    test_obs: torch.Tensor | None = None
    test_logits: torch.Tensor | None = None

    @property
    def n_actions(self) -> int:
        return int(self.attrs["n_actions"])

    def facts(self) -> dict:
        """What config.json says about this game."""
        return {"game": self.game, "dataset": str(self.dataset), "n_actions": self.n_actions,
                "batch_share": self.batch, "teacher_sha256": str(self.attrs["teacher_sha256"]),
                "teacher_parameters": teacher_parameters(self.attrs, self.game),
                "train_states": int(len(self.split.train_rows)), "test_states": int(len(self.split.test_rows)),
                "train_episodes": int(len(self.split.train_episodes)),
                "test_episodes": int(len(self.split.test_episodes))}


def teacher_parameters(attrs: dict, game: str) -> int | None:
    """The parameter count of the teacher that made a recording, where it loads safely from where it was (None
    otherwise): what a multi-game student's size is stated against."""
    from teachers.load import load_teacher

    try:
        teacher = load_teacher(str(attrs["teacher_path"]), game=game)
    except (UserError, OSError, ValueError, KeyError):
        return None
    if teacher.sha256 != str(attrs["teacher_sha256"]):
        return None
    return sum(p.numel() for p in teacher.parameters())


def _games(cfg: TrainConfig, world_size: int) -> list[GameData]:
    """Each recording's game, episodes and split, refusing two recordings of one game and recordings without the
    gradients that recorded-direction Sobolev training needs."""
    if len(cfg.datasets) < 2:
        raise UserError("a multi-game student needs at least two --dataset recordings, one per game")
    if cfg.life_loss_weight != 1.0:
        raise UserError("--life-loss-weight is for single-game runs; leave it at 1 with several --dataset recordings")
    shares = batch_shares(cfg.batch_size, game_mix_weights(cfg.game_mix, len(cfg.datasets)), world_size)
    games: list[GameData] = []
    for i, (path, share) in enumerate(zip(cfg.datasets, shares)):
        episode_of_state, attrs = recording_episodes(Path(path))
        game = str(attrs["game"])
        if any(g.game == game for g in games):
            raise UserError(f"two --dataset recordings of {game} ({games[[g.game for g in games].index(game)].dataset} "
                            f"and {path}); a multi-game student takes one recording per game")
        if cfg.alpha > 0 and not cfg.teacher and not has_gradients(attrs):
            raise no_gradients_error(path, attrs)
        # each game draws from its own generator, so that each game's rows can stream on their own
        seed = int(np.random.SeedSequence([cfg.seed, i]).generate_state(1)[0])
        games.append(GameData(game, Path(path), attrs, split_by_episodes(episode_of_state, cfg.fraction,
                                                                         cfg.split_seed),
                              share, torch.Generator(device="cpu").manual_seed(seed)))
    if "+".join(g.game for g in games) != cfg.game:
        raise UserError(f"the recordings are of {'+'.join(g.game for g in games)}, not {cfg.game}")
    return games


def _live_teachers(cfg: TrainConfig, games: list[GameData], device: torch.device) -> None:
    """With --teacher: one teacher per recording, comma-separated in --dataset order, each checked against the
    recording it made."""
    specs = cfg.teacher.split(",")
    if len(specs) != len(games):
        raise UserError(f"--teacher names {len(specs)} teacher(s) for {len(games)} recordings; with several "
                        "--dataset recordings pass one teacher per recording, comma-separated, in the same order")
    for game, spec in zip(games, specs):
        game.live = recording_teacher(spec, game.dataset, game.attrs, device, cfg.trust_checkpoint)


def _training_rows(cfg: TrainConfig, games: list[GameData], device: torch.device, announce: bool) -> bool:
    """Every game's training rows in memory when all of them fit ``--max-memory``, else all streamed; True when
    streamed."""
    with_gradients = cfg.alpha > 0 and not cfg.teacher
    budget = cfg.max_memory if cfg.max_memory is not None else default_memory_budget()
    needed = sum(training_bytes(len(g.split.train_rows), g.attrs, with_gradients) for g in games)
    streamed = needed > budget * GiB
    if streamed and announce:
        print(f"the training rows of the {len(games)} games need {needed / GiB:.2f} GiB, more than --max-memory "
              f"{budget:.2f} GiB: reading them from the recordings as training goes", file=sys.stderr)
    for g in games:
        kind = StreamingData if streamed else TrainingData
        g.data = kind(g.dataset, g.split.train_rows, device, with_gradients=with_gradients)
    return streamed


def _write_config(run_dir: Path, cfg: TrainConfig, games: list[GameData], student: torch.nn.Module,
                  device: torch.device, world_size: int, streamed: bool) -> None:
    teachers = [g.facts()["teacher_parameters"] for g in games]
    text = json.dumps({
        "config": asdict(cfg), "games": [g.facts() for g in games],
        "student_parameters": count_parameters(student),
        "teachers_parameters": None if None in teachers else sum(teachers),
        "directions": "live teachers, fresh every step" if cfg.teacher and cfg.alpha > 0 else "recorded",
        "training_rows": "streamed from the recordings" if streamed else "in memory",
        "device": str(device), "processes": world_size, "torch_threads": torch.get_num_threads(),
        "cpu_model": cpu_model(), "torch_version": torch.__version__, "package_version": __version__,
        "command": " ".join(sys.argv)}, indent=2)
    tmp = run_dir / "config.json.tmp"  # written whole, then renamed: a kill never leaves half a config
    tmp.write_text(text)
    tmp.replace(run_dir / "config.json")


@dataclass
class _Running:
    """Each game's training losses summed on the device since the last evaluation."""

    games: list[str]
    loss: torch.Tensor | float = 0.0
    kl: dict = field(default_factory=dict)
    sobolev: dict = field(default_factory=dict)
    steps: int = 0
    sobolev_steps: int = 0

    def add(self, out) -> None:
        self.loss, self.steps = self.loss + out.total.detach(), self.steps + 1
        for game, kl in zip(self.games, out.kl_by_game):
            self.kl[game] = self.kl.get(game, 0.0) + kl.detach()
        if out.sobolev_by_game is not None:
            self.sobolev_steps += 1
            for game, sob in zip(self.games, out.sobolev_by_game):
                self.sobolev[game] = self.sobolev.get(game, 0.0) + sob.detach()

    def means(self, shares: list[float], ranks: Ranks, device: torch.device) -> dict:
        """Per game and weighted by the games' batch shares (the loss's weights), over every rank's slices."""
        n, m = max(self.steps, 1), max(self.sobolev_steps, 1)
        row = {"train_loss": float(mean_over_ranks(self.loss, ranks, device)) / n}
        for game in self.games:
            row[f"{game}_train_kl"] = float(mean_over_ranks(self.kl.get(game, 0.0), ranks, device)) / n
            sob = float(mean_over_ranks(self.sobolev.get(game, 0.0), ranks, device)) / m
            row[f"{game}_train_sobolev"] = sob if self.sobolev_steps else ""
        row["train_kl"] = sum(w * row[f"{g}_train_kl"] for w, g in zip(shares, self.games))
        row["train_sobolev"] = (sum(w * row[f"{g}_train_sobolev"] for w, g in zip(shares, self.games))
                                if self.sobolev_steps else "")
        return row


def mean_over_games(by_game: dict[str, dict]) -> dict:
    """The single-game metric names, as means over games; ``test_states`` is the total."""
    rows = list(by_game.values())
    means = {k: float(np.mean([r[k] for r in rows])) for k in ("test_action_error", "test_kl",
                                                                "test_kl_student_teacher")}
    return {**means, "test_states": int(sum(r["test_states"] for r in rows))}


def _evaluate_capped(student, games: list[GameData]) -> dict:
    by_game = {g.game: evaluate_loaded(student.for_game(g.game), g.test_obs, g.test_logits) for g in games}
    flat = {f"{game}_{k}": v[k] for game, v in by_game.items() for k in ("test_action_error", "test_kl")}
    return {**mean_over_games(by_game), **flat}


def train_multigame(cfg: TrainConfig, run_dir: Path, device: torch.device, resume: bool = False,
                    force: bool = False, progress: bool = True, ranks: Ranks = Ranks()) -> dict:
    """Train one student on several games' recordings (``cfg.datasets``); returns the final held-out metrics, per
    game under ``games`` and as means over games (also in ``run_dir/metrics.json``)."""
    cfg.validate()
    run_dir = Path(run_dir)
    games = _games(cfg, ranks.world_size)
    names = [g.game for g in games]
    shares = [g.batch / cfg.batch_size for g in games]
    check_run_dir(run_dir, cfg, resume, force)
    if force and not resume and ranks.is_main:
        start_over(run_dir)

    torch.manual_seed(cfg.seed)
    student = make_multigame_student(cfg.student, {g.game: g.n_actions for g in games}, cfg.activation).to(device)
    optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    generators = [g.generator for g in games]
    step, best = 0, float("inf")
    if resume and (run_dir / "latest.pt").exists():
        step, best = load_checkpoint(run_dir / "latest.pt", student, optimizer, generators)

    if cfg.alpha > 0 and cfg.teacher:
        _live_teachers(cfg, games, device)
    streamed = _training_rows(cfg, games, device, announce=ranks.is_main and progress)
    fields = metric_fields(names)
    if ranks.is_main:
        for g in games:
            g.test_obs, g.test_logits = _capped_test_set(cfg, g.split, device, g.dataset)
        with writes_to(run_dir):
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_config(run_dir, cfg, games, student, device, ranks.world_size, streamed)
            seconds_before = start_metrics_log(run_dir, step, fields)
    bar = tqdm(total=cfg.steps, initial=step, desc=f"distil {len(games)} games a={cfg.alpha:g} f={cfg.fraction:g}",
               unit="step", disable=not (progress and ranks.is_main), dynamic_ncols=True, mininterval=1.0)
    logger = None
    if ranks.is_main:
        with writes_to(run_dir):
            logger = _Logger(run_dir, cfg, bar, seconds_before, start_step=step, fields=fields)

    running = _Running(names)
    model = wrap(student, ranks, device)  # the student, or DDP around it
    local = [g.batch // ranks.world_size for g in games]  # this rank's states of each game per step
    n_projections = {g.game: max(1, int(g.attrs["projections"])) for g in games}
    if streamed:  # each game's workers replay its generator's draws from its state now
        workers = max(1, min(4, (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
                      // len(games))
        for g in games:
            g.data.start(g.generator, g.batch, None, cfg.steps - step, ranks.local_share(g.batch),
                         (n_projections[g.game], g.n_actions) if g.live is not None else None, workers=workers)
    student.train()
    last_saved = step
    try:
        while step < cfg.steps:
            obs, logits, dirs, grads = [], [], [], []
            for g in games:
                share = ranks.local_share(g.batch)
                idx = draw_batch(g.generator, g.data.n, g.batch, None)[share].to(device)
                g_obs, g_logits, g_dirs, g_grads = g.data.batch(idx)
                if g.live is not None:
                    g_dirs, g_grads = live_projections(g.live, g_obs, g.n_actions, n_projections[g.game],
                                                       g.generator, share, g.batch)
                obs.append(g_obs), logits.append(g_logits), dirs.append(g_dirs), grads.append(g_grads)
            weight = sobolev_weight(cfg, step)
            out = multigame_distillation_loss(model, torch.cat(obs), local, logits, weight,
                                              dirs if weight > 0 else None, grads if weight > 0 else None,
                                              cfg.kl, cfg.distance)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, step)
            optimizer.zero_grad(set_to_none=True)
            out.total.backward(inputs=optimizer.param_groups[0]["params"])  # not d(loss)/d(obs): see loop.py
            optimizer.step()
            step += 1
            running.add(out)
            bar.update(1)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                train_means = running.means(shares, ranks, device)
                running = _Running(names)
                best = checkpoint_evaluation(run_dir, step, last_saved, best, train_means,
                                             lambda: _evaluate_capped(student, games), logger, student, optimizer,
                                             generators, ranks)
                last_saved = step
    finally:
        for g in games:
            if isinstance(g.data, StreamingData):
                g.data.close()
        if logger is not None:
            logger.close()
        else:
            bar.close()

    final = None
    if ranks.is_main:
        by_game = {g.game: evaluate_states(student.for_game(g.game), g.dataset, g.split.test_rows, device)
                   for g in games}
        final = mean_over_games(by_game)
        if all_finite(final) and all(all_finite(m) for m in by_game.values()):
            final.update({"games": by_game, "step": step, "alpha": cfg.alpha, "fraction": cfg.fraction,
                          "seed": cfg.seed, "student": cfg.student, "best_capped_test_kl": best})
            tmp = run_dir / "metrics.json.tmp"
            with writes_to(run_dir):
                tmp.write_text(json.dumps(final, indent=2, allow_nan=False))
                tmp.replace(run_dir / "metrics.json")
        else:
            final = str(diverged(run_dir, step, last_saved, final))
    final = from_main(final, ranks)
    if isinstance(final, str):
        raise UserError(final)
    return final
