"""Distil a recorded teacher into a student: KL + alpha * stochastic Sobolev term, resumable runs.

A run directory holds ``config.json``, ``metrics.csv`` (one row per evaluation), ``metrics.json``
(final held-out metrics), ``latest.pt`` / ``best.pt`` checkpoints and TensorBoard logs.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import distill
from distill.data import TrainingData, _read_rows, heldout_blocks, recording_episodes, split_by_episodes
from distill.dataset_file import has_gradients, no_gradients_error, open_recording
from distill.device import cpu_model
from distill.errors import UserError
from distill.lives import before_life_loss, read_lives
from distill.losses import KL_DIRECTIONS, SOBOLEV_DISTANCES, distillation_loss, policy_kl
from distill.sobolev import input_gradients, random_unit_vectors
from distill.students import STUDENTS, count_parameters, make_student

METRIC_FIELDS = ["step", "samples", "train_loss", "train_kl", "train_sobolev", "test_action_error", "test_kl",
                 "test_kl_student_teacher", "test_states", "seconds"]


# settings that shape only the gradient term, at the values a KL-only run (alpha 0) is stored with: such a run is the
# same run whatever they were set to, and stays reusable beside a Sobolev grid with any of them
GRADIENT_TERM_SETTINGS: dict[str, object] = {"teacher": None, "alpha_schedule": "constant", "alpha_until": 1.0}


@dataclass
class TrainConfig:
    """Everything that defines a distillation run (compared on --resume)."""

    dataset: str
    game: str
    alpha: float = 1.0
    fraction: float = 0.1
    student: str = "paper"
    steps: int = 8000
    batch_size: int = 64
    lr: float = 1e-3  # with the cosine decay: measured on Breakout, see docs/figure4.md ("Learning rate")
    lr_schedule: str = "cosine"  # decays to 0 at --steps, so the last step is the schedule's plateau
    # share of --steps over which the rate rises linearly from 0 to --lr: without it, lr 1e-3 killed the first conv
    # layer of 2 of 3 KL-only Pong students in their first 200 steps (docs/figure4.md, "Learning-rate warm-up")
    lr_warmup: float = 0.05
    kl: str = "teacher-student"
    distance: str = "cosine"  # measured on Breakout: see docs/figure4.md
    eval_every: int = 500
    test_cap: int = 5000
    seed: int = 0
    split_seed: int = 0
    teacher: str | None = None  # live teacher: fresh directions every step instead of the recorded ones
    # draw the training states in the last --life-loss-window steps before a lost life this many times as often as
    # the others (1 = uniform, the paper's sampling); needs the recording's `lives` (distill-add-lives)
    life_loss_weight: float = 1.0
    life_loss_window: int = 16
    # constant (the paper), or linear: alpha falls to 0 at --steps, so that the gradient term shapes the student
    # early and stops costing fit at the end, where KL-only students with much data overtake (docs/figure4.md)
    alpha_schedule: str = "constant"
    # with the linear schedule: the share of --steps at which the weight reaches 0 (1 = the last step); below 1 the
    # rest of the run is plain KL distillation, so the student can finish fitting its training states
    alpha_until: float = 1.0

    def without_unused_settings(self) -> TrainConfig:
        """This config, with the gradient term's settings at their stored values when alpha is 0 (they change
        nothing then), so that equal runs have equal configs."""
        return replace(self, **GRADIENT_TERM_SETTINGS) if self.alpha == 0 else self

    def validate(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise UserError(f"--fraction must be strictly between 0 and 1, got {self.fraction}")
        if self.alpha < 0 or not math.isfinite(self.alpha):
            raise UserError(f"--alpha must be >= 0, got {self.alpha}")
        if self.student not in STUDENTS:
            raise UserError(f"unknown --student {self.student!r}; choose one of {', '.join(STUDENTS)}")
        if self.kl not in KL_DIRECTIONS:
            raise UserError(f"--kl must be one of {', '.join(KL_DIRECTIONS)}, got {self.kl!r}")
        if self.distance not in SOBOLEV_DISTANCES:
            raise UserError(f"--distance must be one of {', '.join(SOBOLEV_DISTANCES)}, got {self.distance!r}")
        if self.life_loss_weight <= 0 or not math.isfinite(self.life_loss_weight):
            raise UserError(f"--life-loss-weight must be positive (1 = uniform sampling), got {self.life_loss_weight}")
        for name in ("steps", "batch_size", "eval_every", "test_cap", "life_loss_window"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise UserError(f"--lr must be positive, got {self.lr}")
        if not 0.0 <= self.lr_warmup < 1.0 or not math.isfinite(self.lr_warmup):
            raise UserError(f"--lr-warmup is a share of --steps in [0, 1), got {self.lr_warmup}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UserError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.alpha_schedule not in ALPHA_SCHEDULES:
            raise UserError(f"--alpha-schedule must be one of {', '.join(ALPHA_SCHEDULES)}, "
                            f"got {self.alpha_schedule!r}")
        if not 0.0 < self.alpha_until <= 1.0 or not math.isfinite(self.alpha_until):
            raise UserError(f"--alpha-until is a share of --steps in (0, 1], got {self.alpha_until}")
        if self.alpha_until != 1.0 and self.alpha_schedule != "linear":
            raise UserError(f"--alpha-until {self.alpha_until:g} needs --alpha-schedule linear "
                            "(a constant weight never falls to 0)")


LR_SCHEDULES = ("constant", "cosine")
ALPHA_SCHEDULES = ("constant", "linear")


def sobolev_weight(cfg: TrainConfig, step: int) -> float:
    """The Sobolev term's weight at optimiser step ``step`` (0-based): --alpha throughout, or falling linearly from
    --alpha at the first step towards 0 at ``--alpha-until * --steps``. With --alpha-until 1 it is positive at every
    step taken, so the term is always built; with less it is 0 from there on and those steps cost what KL-only
    steps cost."""
    if cfg.alpha_schedule == "linear":
        end = cfg.alpha_until * cfg.steps
        return cfg.alpha * max(0.0, 1.0 - step / end)
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
    if step < warm:
        rate *= (step + 1) / warm
    return rate


@torch.no_grad()
def _metric_sums(student: torch.nn.Module, obs_uint8: torch.Tensor, teacher: torch.Tensor) -> tuple[float, float, float]:
    logits = student(obs_uint8.float().div_(255))
    n = len(obs_uint8)
    return ((logits.argmax(1) != teacher.argmax(1)).sum().item(),
            policy_kl(logits, teacher, "teacher-student").item() * n,
            policy_kl(logits, teacher, "student-teacher").item() * n)


def _metrics(sums: list[tuple[float, float, float]], n: int) -> dict:
    errors, kl_ts, kl_st = (sum(col) for col in zip(*sums)) if sums else (0.0, 0.0, 0.0)
    n_safe = max(n, 1)
    return {"test_action_error": errors / n_safe, "test_kl": kl_ts / n_safe, "test_kl_student_teacher": kl_st / n_safe,
            "test_states": n}


@torch.no_grad()
def evaluate_states(student: torch.nn.Module, dataset: Path, rows: np.ndarray, device: torch.device,
                    block: int = 1024) -> dict:
    """Held-out metrics read from the file in blocks: action error (argmax disagreement), KL both ways, in nats."""
    student.eval()
    sums = [_metric_sums(student, obs, teacher) for obs, teacher in heldout_blocks(dataset, rows, device, block)]
    student.train()
    return _metrics(sums, len(rows))


@torch.no_grad()
def evaluate_loaded(student: torch.nn.Module, obs_uint8: torch.Tensor, teacher: torch.Tensor,
                    block: int = 1024) -> dict:
    """The same metrics on test states already in memory (the capped set of periodic evaluations)."""
    student.eval()
    sums = [_metric_sums(student, obs_uint8[i:i + block], teacher[i:i + block]) for i in range(0, len(obs_uint8), block)]
    student.train()
    return _metrics(sums, len(obs_uint8))


def find_latest_recording(game: str, data_dir: Path = Path("data"), needs_gradients: bool = False) -> Path:
    """Newest complete recording of ``game`` anywhere under ``data_dir``; with ``needs_gradients``, the newest that
    holds input gradients (Sobolev training on recorded directions cannot use a gradient-free one).

    Each file's own attributes decide: its ``game`` (not its name, which the user may have chosen freely) and when
    it was finished (not its modification time, which a copy or a read-write open changes).
    """
    found: list[tuple[str, float, Path]] = []
    gradient_free = 0
    for path in sorted(data_dir.rglob("*.h5")):
        try:
            f = open_recording(path)
        except UserError:
            continue  # incomplete, corrupt or not a recording: never chosen
        with f:
            if str(f.attrs["game"]) != game:
                continue
            if needs_gradients and not has_gradients(f.attrs):
                gradient_free += 1
                continue
            found.append((str(f.attrs.get("finished", "")), path.stat().st_mtime, path))
    if not found and gradient_free:
        raise UserError(f"the recordings of {game} under {data_dir} hold no input gradients (--projections 0); pass "
                        f"--teacher {game} to draw them from the live teacher, train with --alpha 0, or record with "
                        f"`distill-record --game {game}`")
    if not found:
        raise UserError(f"no complete recording of {game} under {data_dir}; make one with "
                        f"`distill-record --game {game}` or pass --dataset FILE")
    return max(found)[2]


def recording_teacher(spec: str, dataset: str | Path, attrs: dict, device: torch.device):
    """The teacher that made a recording, loaded to draw fresh directions (refuses any other teacher)."""
    from teachers.load import load_teacher

    teacher = load_teacher(spec, game=str(attrs["game"]), device=device)
    if teacher.sha256 != str(attrs["teacher_sha256"]):
        raise UserError(f"--teacher {spec} is not the teacher that made {dataset} (sha256 "
                        f"{teacher.sha256[:12]} vs {str(attrs['teacher_sha256'])[:12]}); pass that teacher's .zip "
                        f"({attrs.get('teacher_path', 'see distill-inspect')}) or drop --teacher")
    return teacher


def live_projections(teacher: torch.nn.Module, obs_scaled: torch.Tensor, n_actions: int, k: int,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Fresh unit directions v and the teacher's grad_s <log pi*(s), v> for a batch (the paper's estimator)."""
    dirs = random_unit_vectors(len(obs_scaled), k, n_actions, generator=generator).to(obs_scaled.device)
    with torch.enable_grad():
        x = obs_scaled.detach().requires_grad_(True)
        grads = input_gradients(torch.log_softmax(teacher(x), 1), x, dirs, create_graph=False)
    return dirs, grads.detach()


def _save(path: Path, student, optimizer, step: int, best: float, rng: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": student.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "best": best,
                "rng": rng}, tmp)
    tmp.replace(path)  # atomic: a kill never leaves a half-written checkpoint


def sampling_weights(cfg: TrainConfig, episode_of_state: np.ndarray, train_rows: np.ndarray) -> torch.Tensor | None:
    """Relative chance of each training state to be drawn: ``--life-loss-weight`` for the states just before a lost
    life, 1 for the others; None for uniform sampling (the default, drawn as before this option existed)."""
    if cfg.life_loss_weight == 1.0:
        return None
    marked = before_life_loss(read_lives(cfg.dataset), episode_of_state, cfg.life_loss_window)[train_rows]
    if not marked.any():
        raise UserError(f"no training state of {cfg.dataset} lies before a lost life (fraction {cfg.fraction}); "
                        "--life-loss-weight needs some: use a larger --fraction or leave the weight at 1")
    return torch.from_numpy(np.where(marked, cfg.life_loss_weight, 1.0))


def settings_differences(run_dir: Path, cfg: TrainConfig, ignore: tuple[str, ...] = ()) -> dict[str, object]:
    """The settings (name: stored value) in which the run in ``run_dir`` differs from ``cfg``, so that runs made
    with other settings are neither resumed nor reused as if they were the same."""
    return config_differences(run_dir / "config.json", cfg, ignore)


def config_differences(config_json: Path, cfg: TrainConfig, ignore: tuple[str, ...] = ()) -> dict[str, object]:
    """``settings_differences`` for a run's config.json wherever it lies (a published copy, say)."""
    # settings added later take the value older runs were made with
    older = {"lr_schedule": "constant", "lr_warmup": 0.0, "life_loss_weight": 1.0, "life_loss_window": 16,
             "alpha_schedule": "constant", "alpha_until": 1.0}
    stored = {**older, **json.loads(config_json.read_text())["config"]}
    if cfg.alpha == 0:  # a KL-only run has no gradient term: older ones may have stored a teacher with it
        ignore = (*ignore, *GRADIENT_TERM_SETTINGS)
    diffs = {k: stored.get(k) for k, v in asdict(cfg).items()
             if k not in ignore and k != "dataset" and stored.get(k) != v}
    if Path(str(stored.get("dataset"))).resolve() != Path(cfg.dataset).resolve():
        diffs["dataset"] = stored.get("dataset")
    return diffs


def train(cfg: TrainConfig, run_dir: Path, device: torch.device, resume: bool = False, force: bool = False,
          progress: bool = True) -> dict:
    """Train one student; returns the final held-out metrics (also in ``run_dir/metrics.json``)."""
    cfg.validate()
    dataset = Path(cfg.dataset)
    episode_of_state, attrs = recording_episodes(dataset)
    if str(attrs["game"]) != cfg.game:
        raise UserError(f"{dataset} is a recording of {attrs['game']}, not {cfg.game}; pass --game {attrs['game']}")
    if cfg.alpha > 0 and not cfg.teacher and not has_gradients(attrs):
        raise no_gradients_error(dataset, attrs)
    n_actions = int(attrs["n_actions"])
    split = split_by_episodes(episode_of_state, cfg.fraction, cfg.split_seed)

    config_path = run_dir / "config.json"
    if run_dir.exists() and any(run_dir.iterdir()):
        if resume:
            if not config_path.exists():
                raise UserError(f"--resume: {run_dir} holds no config.json; it is not a training run")
            # constant schedules let a run be extended; a decaying one is defined by its step count
            extendable = cfg.lr_schedule == "constant" and cfg.without_unused_settings().alpha_schedule == "constant"
            free = ("steps", "eval_every") if extendable else ("eval_every",)
            diffs = settings_differences(run_dir, cfg, ignore=free)
            if diffs:
                raise UserError(f"--resume: {run_dir} was trained with other settings ({', '.join(diffs)}); "
                                "use the same flags or another --out")
        elif not force:
            raise UserError(f"{run_dir} already exists; pass --resume to continue it or --force to start over")
    elif resume:
        print(f"--resume: {run_dir} does not exist yet; starting a new run", file=sys.stderr)
    weights = sampling_weights(cfg, episode_of_state, split.train_rows)
    if force and not resume and run_dir.exists():  # only once every check has passed
        shutil.rmtree(run_dir)

    torch.manual_seed(cfg.seed)
    student = make_student(cfg.student, n_actions).to(device)
    optimizer = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    step, best = 0, float("inf")
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    latest = run_dir / "latest.pt"
    if resume and latest.exists():
        state = torch.load(latest, map_location="cpu", weights_only=False)  # load_state_dict moves it to the device
        student.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, best = int(state["step"]), float(state["best"])
        gen.set_state(state["rng"]["batch"])  # the batch generator lives on the CPU, whatever the device

    with_grads = cfg.alpha > 0
    live = recording_teacher(cfg.teacher, dataset, attrs, device) if with_grads and cfg.teacher else None
    data = TrainingData(dataset, split.train_rows, device, with_gradients=with_grads and live is None)
    capped = np.sort(np.random.default_rng(cfg.split_seed).choice(split.test_rows, min(cfg.test_cap, len(split.test_rows)),
                                                                  replace=False))
    with open_recording(dataset) as f:  # loaded once: periodic evaluations reuse it
        capped_obs = torch.from_numpy(_read_rows(f["obs"], capped)).to(device)
        capped_logits = torch.from_numpy(f["logits"][:][capped]).to(device)
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps({
        "config": asdict(cfg), "n_actions": n_actions, "student_parameters": count_parameters(student),
        "train_states": int(len(split.train_rows)), "test_states": int(len(split.test_rows)),
        "train_episodes": int(len(split.train_episodes)), "test_episodes": int(len(split.test_episodes)),
        "teacher_sha256": str(attrs["teacher_sha256"]),
        "directions": "live teacher, fresh every step" if live is not None else "recorded",
        **({} if weights is None else {
            "train_states_before_life_loss": int((weights != 1.0).sum()),
            "share_of_draws_before_life_loss": float(weights[weights != 1.0].sum() / weights.sum())}),
        # float sums on the CPU depend on the CPU and the thread count: reruns are bit-identical only where they match
        "device": str(device), "torch_threads": torch.get_num_threads(), "cpu_model": cpu_model(),
        "torch_version": torch.__version__, "package_version": distill.__version__,
        "command": " ".join(sys.argv)}, indent=2))

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tensorboard"))
    metrics_path = run_dir / "metrics.csv"
    seconds_before = 0.0  # training wall time of earlier invocations, so that `seconds` counts the whole run
    if step == 0 or not metrics_path.exists():
        with metrics_path.open("w", newline="") as handle:
            csv.DictWriter(handle, METRIC_FIELDS).writeheader()
    else:  # drop rows logged after the checkpoint we resume from
        with metrics_path.open() as handle:
            kept = [r for r in csv.DictReader(handle) if int(r["step"]) <= step]
        with metrics_path.open("w", newline="") as handle:
            w = csv.DictWriter(handle, METRIC_FIELDS)
            w.writeheader()
            w.writerows(kept)
        if kept and kept[-1]["seconds"]:  # checkpoints are written with the rows, so the last kept row is ours
            seconds_before = float(kept[-1]["seconds"])

    bar = tqdm(total=cfg.steps, initial=step, desc=f"distil a={cfg.alpha:g} f={cfg.fraction:g}", unit="step",
               disable=not progress, dynamic_ncols=True, mininterval=1.0)
    start_time, start_step, running = time.time(), step, {"loss": 0.0, "kl": 0.0, "sob": 0.0, "n": 0, "n_sob": 0}
    student.train()
    while step < cfg.steps:
        if weights is None:
            idx = torch.randint(data.n, (cfg.batch_size,), generator=gen).to(device)
        else:
            idx = torch.multinomial(weights, cfg.batch_size, replacement=True, generator=gen).to(device)
        obs, teacher_logits, dirs, grads = data.batch(idx)
        if live is not None:
            # as many fresh directions per state as the recording holds, one for a gradient-free recording
            dirs, grads = live_projections(live, obs, n_actions, max(1, int(attrs["projections"])), gen)
        out = distillation_loss(student, obs, teacher_logits, sobolev_weight(cfg, step), dirs, grads, cfg.kl,
                                cfg.distance)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, step)
        optimizer.zero_grad(set_to_none=True)
        out.total.backward()
        optimizer.step()
        step += 1
        # summed on the device: a .item() per step would stall a GPU on every step
        running["loss"] += out.total.detach()
        running["kl"] += out.kl.detach()
        if out.sobolev is not None:  # not built once a falling weight has reached 0
            running["sob"] += out.sobolev.detach()
            running["n_sob"] += 1
        running["n"] += 1
        bar.update(1)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            metrics = evaluate_loaded(student, capped_obs, capped_logits)
            n = max(running["n"], 1)
            row = {"step": step, "samples": step * cfg.batch_size, "train_loss": float(running["loss"]) / n,
                   "train_kl": float(running["kl"]) / n,
                   "train_sobolev": float(running["sob"]) / running["n_sob"] if running["n_sob"] else "",
                   **metrics, "seconds": round(seconds_before + time.time() - start_time, 3)}
            running = {"loss": 0.0, "kl": 0.0, "sob": 0.0, "n": 0, "n_sob": 0}
            with metrics_path.open("a", newline="") as handle:
                csv.DictWriter(handle, METRIC_FIELDS).writerow(row)
            for key in ("train_loss", "train_kl", "test_action_error", "test_kl"):
                writer.add_scalar(key, row[key], step)
            if row["train_sobolev"] != "":
                writer.add_scalar("train_sobolev", row["train_sobolev"], step)
            if with_grads:
                writer.add_scalar("alpha", sobolev_weight(cfg, step - 1), step)
            bar.set_postfix(err=f"{metrics['test_action_error']:.3f}", kl=f"{metrics['test_kl']:.4f}",
                            sps=f"{(step - start_step) * cfg.batch_size / max(time.time() - start_time, 1e-9):.0f}",  # this invocation's
                            refresh=False)
            if metrics["test_kl"] < best:
                best = metrics["test_kl"]
                _save(run_dir / "best.pt", student, optimizer, step, best, {"batch": gen.get_state()})
            _save(latest, student, optimizer, step, best, {"batch": gen.get_state()})
    bar.close()
    writer.close()
    final = evaluate_states(student, dataset, split.test_rows, device)  # the whole held-out set
    final.update({"step": step, "alpha": cfg.alpha, "fraction": cfg.fraction, "seed": cfg.seed,
                  "student": cfg.student, "best_capped_test_kl": best})
    (run_dir / "metrics.json").write_text(json.dumps(final, indent=2))
    return final


def load_student(run_dir: str | Path, which: str = "latest", device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """A trained student and its run's config.json, refusing directories that are not runs."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    checkpoint = run_dir / f"{which}.pt"
    if not config_path.exists() or not checkpoint.exists():
        raise UserError(f"{run_dir} is not a finished distill-train run (needs config.json and {which}.pt); "
                        "train one with `distill-train`")
    info = json.loads(config_path.read_text())
    student = make_student(info["config"]["student"], int(info["n_actions"]))
    state = torch.load(checkpoint, map_location=device, weights_only=False)
    student.load_state_dict(state["model"])
    student.to(device).eval()
    for p in student.parameters():
        p.requires_grad_(False)
    return student, info
