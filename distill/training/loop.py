"""Distil a recorded teacher into a student: KL + alpha * stochastic Sobolev term, in a resumable run directory.

:func:`train` reads top to bottom: check the recording, prepare the run directory, build the student, then for each
step draw a batch, take the loss, step Adam, and every ``eval_every`` steps evaluate, log and checkpoint. What the
run directory holds is :mod:`distill.training.runs`'s business; the schedules are in :mod:`distill.training.config`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from distill._version import __version__
from distill.environment.device import cpu_model
from distill.environment.errors import UserError
from distill.recording.lives import before_life_loss, read_lives
from distill.recording.schema import has_gradients, no_gradients_error, open_recording, read_range, require_finite
from distill.sobolev import input_gradients, random_unit_vectors
from distill.training.config import TrainConfig
from distill.training.distributed import Ranks, from_main, mean_over_ranks, wrap
from distill.training.data import Split, TrainingData, read_rows, recording_episodes, split_by_episodes
from distill.training.losses import distillation_loss
from distill.training.metrics import evaluate_loaded, evaluate_states
from distill.training.runs import (METRIC_FIELDS, append_metrics, check_run_dir, load_checkpoint, save_checkpoint,
                                   start_metrics_log, start_over, writes_to)
from distill.training.streaming import GiB, StreamingData, default_memory_budget, draw_batch, training_bytes
from distill.training.students import count_parameters, make_student


def sobolev_weight(cfg: TrainConfig, step: int) -> float:
    """The Sobolev term's weight at optimiser step ``step`` (0-based): --alpha throughout, or falling linearly from
    --alpha at the first step towards 0 at ``--alpha-until * --steps``. With --alpha-until 1 it is positive at every
    step taken, so the term is always built; with less it is 0 from there on and those steps cost what KL-only
    steps cost."""
    if cfg.alpha_schedule == "linear":
        return cfg.alpha * max(0.0, 1.0 - step / (cfg.alpha_until * cfg.steps))
    return cfg.alpha


def warmup_steps(cfg: TrainConfig) -> int:
    """Steps of the linear warm-up (at least one when --lr-warmup is positive)."""
    return max(1, round(cfg.lr_warmup * cfg.steps)) if cfg.lr_warmup > 0 else 0


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Adam's learning rate for optimiser step ``step`` (0-based): constant or cosine-decayed from --lr to 0, times a
    linear ramp over the first warm-up steps (so Adam's first, sign-like updates are small)."""
    rate = cfg.lr
    if cfg.lr_schedule == "cosine":
        rate *= 0.5 * (1.0 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))
    warm = warmup_steps(cfg)
    return rate * (step + 1) / warm if step < warm else rate


def recording_teacher(spec: str, dataset: str | Path, attrs: dict, device: torch.device, trust: bool = False):
    """The teacher that made a recording, loaded to draw fresh directions (refuses any other teacher)."""
    from teachers.load import load_teacher

    teacher = load_teacher(spec, game=str(attrs["game"]), device=device, trust_checkpoint=trust)
    if teacher.sha256 != str(attrs["teacher_sha256"]):
        raise UserError(f"--teacher {spec} is not the teacher that made {dataset} (sha256 "
                        f"{teacher.sha256[:12]} vs {str(attrs['teacher_sha256'])[:12]}); pass that teacher's .zip "
                        f"({attrs.get('teacher_path', 'see distill-inspect')}) or drop --teacher")
    return teacher


def live_projections(teacher: torch.nn.Module, obs_scaled: torch.Tensor, n_actions: int, k: int,
                     generator: torch.Generator, share: slice | None = None,
                     draws: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fresh unit directions v and the teacher's grad_s <log pi*(s), v> for a batch (the paper's estimator). Under
    several processes each draws the directions of the whole global batch (``draws``) and keeps its ``share``, so
    that the directions are those one process would draw."""
    dirs = random_unit_vectors(draws or len(obs_scaled), k, n_actions, generator=generator)[share or slice(None)]
    dirs = dirs.to(obs_scaled.device)
    with torch.enable_grad():
        x = obs_scaled.detach().requires_grad_(True)
        grads = input_gradients(torch.log_softmax(teacher(x), 1), x, dirs, create_graph=False)
    return dirs, grads.detach()


def sampling_weights(cfg: TrainConfig, episode_of_state: np.ndarray, train_rows: np.ndarray) -> torch.Tensor | None:
    """Relative chance of each training state to be drawn (experimental ``--life-loss-weight``): the weight for the
    states just before a lost life, 1 for the others; None for uniform sampling (the default)."""
    if cfg.life_loss_weight == 1.0:
        return None
    marked = before_life_loss(read_lives(cfg.dataset), episode_of_state, cfg.life_loss_window)[train_rows]
    if not marked.any():
        raise UserError(f"no training state of {cfg.dataset} lies before a lost life (fraction {cfg.fraction}); "
                        "--life-loss-weight needs some: use a larger --fraction or leave the weight at 1")
    return torch.from_numpy(np.where(marked, cfg.life_loss_weight, 1.0))


def _check_recording(cfg: TrainConfig) -> tuple[np.ndarray, dict]:
    """The recording's episode ids and attributes, refusing one of another game, or without the gradients that
    Sobolev training on recorded directions needs."""
    episode_of_state, attrs = recording_episodes(Path(cfg.dataset))
    if str(attrs["game"]) != cfg.game:
        raise UserError(f"{cfg.dataset} is a recording of {attrs['game']}, not {cfg.game}; pass --game {attrs['game']}")
    if cfg.alpha > 0 and not cfg.teacher and not has_gradients(attrs):
        raise no_gradients_error(cfg.dataset, attrs)
    return episode_of_state, attrs


def training_data(cfg: TrainConfig, split: Split, attrs: dict, device: torch.device, with_gradients: bool,
                  announce: bool = False) -> TrainingData | StreamingData:
    """The training rows in memory when they fit ``--max-memory``, else read from the recording as training goes."""
    budget = cfg.max_memory if cfg.max_memory is not None else default_memory_budget()
    needed = training_bytes(len(split.train_rows), attrs, with_gradients)
    if needed <= budget * GiB:
        return TrainingData(Path(cfg.dataset), split.train_rows, device, with_gradients=with_gradients)
    if announce:
        print(f"the training rows need {needed / GiB:.2f} GiB, more than --max-memory {budget:.2f} GiB: reading "
              "them from the recording as training goes", file=sys.stderr)
    return StreamingData(Path(cfg.dataset), split.train_rows, device, with_gradients=with_gradients)


def _capped_test_set(cfg: TrainConfig, split: Split, device: torch.device,
                     dataset: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed sample of at most ``test_cap`` held-out states of ``dataset`` (default: the run's), loaded once: the
    periodic evaluations reuse it."""
    dataset = dataset or cfg.dataset
    rows = np.sort(np.random.default_rng(cfg.split_seed).choice(
        split.test_rows, min(cfg.test_cap, len(split.test_rows)), replace=False))
    with open_recording(dataset) as f:
        obs, logits = read_rows(f["obs"], rows), read_range(f["logits"])[rows]
    require_finite(dataset, "logits", logits, rows)
    return torch.from_numpy(obs).to(device), torch.from_numpy(logits).to(device)


def _write_config(run_dir: Path, cfg: TrainConfig, attrs: dict, split: Split, student: torch.nn.Module,
                  live: bool, weights: torch.Tensor | None, device: torch.device, world_size: int,
                  streamed: bool) -> None:
    text = json.dumps({
        "config": asdict(cfg), "n_actions": int(attrs["n_actions"]), "student_parameters": count_parameters(student),
        "train_states": int(len(split.train_rows)), "test_states": int(len(split.test_rows)),
        "train_episodes": int(len(split.train_episodes)), "test_episodes": int(len(split.test_episodes)),
        "teacher_sha256": str(attrs["teacher_sha256"]),
        "directions": "live teacher, fresh every step" if live else "recorded",
        "training_rows": "streamed from the recording" if streamed else "in memory",
        **({} if weights is None else {
            "train_states_before_life_loss": int((weights != 1.0).sum()),
            "share_of_draws_before_life_loss": float(weights[weights != 1.0].sum() / weights.sum())}),
        # float sums on the CPU depend on the CPU and the thread count: reruns are bit-identical only where they match
        "device": str(device), "processes": world_size, "torch_threads": torch.get_num_threads(),
        "cpu_model": cpu_model(),
        "torch_version": torch.__version__, "package_version": __version__,
        "command": " ".join(sys.argv)}, indent=2)
    tmp = run_dir / "config.json.tmp"  # written whole, then renamed: a kill never leaves half a config
    tmp.write_text(text)
    tmp.replace(run_dir / "config.json")


@dataclass
class _Running:
    """Training losses summed on the device since the last evaluation (a .item() per step would stall a GPU)."""

    loss: torch.Tensor | float = 0.0
    kl: torch.Tensor | float = 0.0
    sobolev: torch.Tensor | float = 0.0
    steps: int = 0
    sobolev_steps: int = 0  # the term is not built once a falling weight has reached 0

    def add(self, out) -> None:
        self.loss, self.kl, self.steps = self.loss + out.total.detach(), self.kl + out.kl.detach(), self.steps + 1
        if out.sobolev is not None:
            self.sobolev, self.sobolev_steps = self.sobolev + out.sobolev.detach(), self.sobolev_steps + 1

    def means(self, ranks: Ranks = Ranks(), device: torch.device | None = None) -> dict:
        """The means since the last evaluation, over every rank's slices (a collective: every rank calls it)."""
        n = max(self.steps, 1)
        loss, kl, sobolev = (float(mean_over_ranks(v, ranks, device)) for v in (self.loss, self.kl, self.sobolev))
        return {"train_loss": loss / n, "train_kl": kl / n,
                "train_sobolev": sobolev / self.sobolev_steps if self.sobolev_steps else ""}


@dataclass
class _Logger:
    """metrics.csv, TensorBoard and the progress bar: where each periodic evaluation goes."""

    run_dir: Path
    cfg: TrainConfig
    bar: tqdm
    seconds_before: float
    start: float = field(default_factory=time.time)
    start_step: int = 0
    fields: list[str] = field(default_factory=lambda: list(METRIC_FIELDS))  # metrics.csv's columns

    def __post_init__(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.run_dir / "tensorboard"))

    def log(self, step: int, train_means: dict, metrics: dict) -> None:
        elapsed = time.time() - self.start
        row = {"step": step, "samples": step * self.cfg.batch_size, **train_means, **metrics,
               "seconds": round(self.seconds_before + elapsed, 3)}
        append_metrics(self.run_dir, row, self.fields)
        for key, value in row.items():
            if key not in ("step", "samples", "seconds") and not key.endswith("test_states") and value != "":
                self.writer.add_scalar(key, value, step)
        if self.cfg.alpha > 0:
            self.writer.add_scalar("alpha", sobolev_weight(self.cfg, step - 1), step)
        samples_per_s = (step - self.start_step) * self.cfg.batch_size / max(elapsed, 1e-9)  # this invocation's
        self.bar.set_postfix(err=f"{metrics['test_action_error']:.3f}", kl=f"{metrics['test_kl']:.4f}",
                             sps=f"{samples_per_s:.0f}", refresh=False)

    def close(self) -> None:
        self.bar.close()
        try:
            self.writer.close()
        except OSError:  # the TensorBoard copy of metrics.csv: a full disk must not hide the error that ended the run
            pass


def train(cfg: TrainConfig, run_dir: Path, device: torch.device, resume: bool = False, force: bool = False,
          progress: bool = True, ranks: Ranks = Ranks()) -> dict:
    """Train one student; returns the final held-out metrics (also in ``run_dir/metrics.json``). Under torchrun
    (``ranks`` from :func:`distill.training.distributed.start`) every rank trains on its slice of each global batch
    and rank 0 alone evaluates and writes."""
    cfg.validate()
    run_dir = Path(run_dir)
    episode_of_state, attrs = _check_recording(cfg)
    split = split_by_episodes(episode_of_state, cfg.fraction, cfg.split_seed)
    check_run_dir(run_dir, cfg, resume, force)
    weights = sampling_weights(cfg, episode_of_state, split.train_rows)
    if force and not resume and ranks.is_main:
        start_over(run_dir)

    torch.manual_seed(cfg.seed)
    student = make_student(cfg.student, int(attrs["n_actions"]), cfg.activation).to(device)
    optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    step, best = 0, float("inf")
    if resume and (run_dir / "latest.pt").exists():
        step, best = load_checkpoint(run_dir / "latest.pt", student, optimizer, gen)

    live = recording_teacher(cfg.teacher, cfg.dataset, attrs, device, cfg.trust_checkpoint) if cfg.alpha > 0 and cfg.teacher else None
    data = training_data(cfg, split, attrs, device, with_gradients=cfg.alpha > 0 and live is None,
                         announce=ranks.is_main and progress)
    streamed = isinstance(data, StreamingData)
    if ranks.is_main:
        capped_obs, capped_logits = _capped_test_set(cfg, split, device)
        with writes_to(run_dir):
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_config(run_dir, cfg, attrs, split, student, live is not None, weights, device, ranks.world_size,
                          streamed)
            seconds_before = start_metrics_log(run_dir, step)
    bar = tqdm(total=cfg.steps, initial=step, desc=f"distil a={cfg.alpha:g} f={cfg.fraction:g}", unit="step",
               disable=not (progress and ranks.is_main), dynamic_ncols=True, mininterval=1.0)
    logger = None
    if ranks.is_main:
        with writes_to(run_dir):
            logger = _Logger(run_dir, cfg, bar, seconds_before, start_step=step)

    running = _Running()
    model = wrap(student, ranks, device)  # what the step calls: the student, or DDP around it
    share = ranks.local_share(cfg.batch_size)  # this rank's slice of each global batch
    n_projections = max(1, int(attrs["projections"]))  # fresh directions per state from a live teacher
    if streamed:  # the workers replay the draws below from the generator's state now
        data.start(gen, cfg.batch_size, weights, cfg.steps - step, share,
                   (n_projections, int(attrs["n_actions"])) if live is not None else None)
    student.train()
    last_saved = step
    try:
        while step < cfg.steps:
            idx = draw_batch(gen, data.n, cfg.batch_size, weights)[share].to(device)
            obs, teacher_logits, dirs, grads = data.batch(idx)
            if live is not None:  # as many fresh directions per state as the recording holds (one if it holds none)
                dirs, grads = live_projections(live, obs, int(attrs["n_actions"]), n_projections, gen, share,
                                               cfg.batch_size)
            out = distillation_loss(model, obs, teacher_logits, sobolev_weight(cfg, step), dirs, grads, cfg.kl,
                                    cfg.distance)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, step)
            optimizer.zero_grad(set_to_none=True)
            # parameters only: the observations are a leaf that requires grad (for the input gradient), and a bare
            # backward() would also compute d(loss)/d(obs), the costliest conv of a Sobolev step, for nothing
            out.total.backward(inputs=optimizer.param_groups[0]["params"])
            optimizer.step()
            step += 1
            running.add(out)
            bar.update(1)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                train_means = running.means(ranks, device)
                running = _Running()
                best = checkpoint_evaluation(run_dir, step, last_saved, best, train_means,
                                             lambda: evaluate_loaded(student, capped_obs, capped_logits), logger,
                                             student, optimizer, gen, ranks)
                last_saved = step
    finally:
        if streamed:
            data.close()
        if logger is not None:
            logger.close()
        else:
            bar.close()

    final = None
    if ranks.is_main:
        final = evaluate_states(student, Path(cfg.dataset), split.test_rows, device)  # the whole held-out set
        if all_finite(final):
            final.update({"step": step, "alpha": cfg.alpha, "fraction": cfg.fraction, "seed": cfg.seed,
                          "student": cfg.student, "best_capped_test_kl": best})
            tmp = run_dir / "metrics.json.tmp"
            with writes_to(run_dir):
                tmp.write_text(json.dumps(final, indent=2, allow_nan=False))  # NaN or Infinity never reads as success
                tmp.replace(run_dir / "metrics.json")
        else:
            final = str(diverged(run_dir, step, last_saved, final))
    final = from_main(final, ranks)
    if isinstance(final, str):
        raise UserError(final)
    return final


def checkpoint_evaluation(run_dir: Path, step: int, last_saved: int, best: float, train_means: dict,
                          evaluate: Callable[[], dict], logger: _Logger | None, student: torch.nn.Module,
                          optimizer: torch.optim.Optimizer, generators, ranks: Ranks) -> float:
    """One evaluation step of a training loop, shared by single- and multi-game runs: rank 0 evaluates, logs and
    checkpoints (best.pt on a new best held-out KL, latest.pt always) and returns the best KL so far. A non-finite
    loss or metric is checked here, not at every step (which would stall a GPU): a NaN anywhere since the last
    checkpoint shows in the summed losses or the evaluation, and stops every rank with one line before a checkpoint
    takes it in."""
    stopped = None  # rank 0's reason to stop, told to every rank
    if ranks.is_main:
        metrics = evaluate()
        measured = {**train_means, **metrics}
        if not all_finite(measured):
            stopped = str(diverged(run_dir, step, last_saved, measured))
        else:
            with writes_to(run_dir):
                logger.log(step, train_means, metrics)
            if metrics["test_kl"] < best:
                best = metrics["test_kl"]
                save_checkpoint(run_dir / "best.pt", student, optimizer, step, best, generators)
            save_checkpoint(run_dir / "latest.pt", student, optimizer, step, best, generators)
    stopped = from_main(stopped, ranks)
    if stopped:
        raise UserError(stopped)
    return best


def all_finite(values: dict) -> bool:
    return all(math.isfinite(v) for v in values.values() if isinstance(v, float))


def diverged(run_dir: Path, step: int, last_saved: int, values: dict) -> UserError:
    """The one-line stop for a non-finite loss or metric: what happened, what is kept, the way on."""
    bad = ", ".join(k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v))
    kept = (f"the last good checkpoint {run_dir / 'latest.pt'} (step {last_saved}) is kept" if last_saved
            else "no checkpoint had been written yet")
    return UserError(f"training diverged: {bad} became non-finite (NaN or infinity) between steps {last_saved} and "
                     f"{step}; {kept}: if the data was at fault, repair it and rerun with --resume; if the settings "
                     "were (e.g. too high an --lr), start a new run with other ones")
