"""A3C-style teacher training with stable-baselines3 A2C (or PPO), resumable from checkpoints.

Settings are rl-baselines3-zoo's Atari hyperparameters: 16 environments, 5-step rollouts,
RMSpropTFLike (lr 7e-4, eps 1e-5), entropy 0.01, value 0.25, NatureCNN policy
(3 conv layers, then a 512-unit fully connected layer and the output layer), which is the
teacher shape of the paper.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from tqdm import tqdm

from distill.environment import atari
from distill.environment.device import resolve_device
from distill.environment.errors import UserError

ALGOS = ("a2c", "ppo")
VEC_ENVS = ("dummy", "subproc")


@dataclass
class TeacherRunConfig:
    """Everything that defines a teacher training run; stored beside its checkpoints."""

    game: str
    algo: str = "a2c"
    steps: int = 10_000_000
    seed: int = 0
    envs: int = 16
    device: str = "auto"
    checkpoint_every: int = 250_000
    vec_env: str = "dummy"
    hyperparameters: dict = field(default_factory=dict)


def zoo_hyperparameters(algo: str) -> dict:
    """rl-baselines3-zoo's Atari hyperparameters for ``algo`` (its `atari` entry)."""
    if algo == "a2c":
        return {"n_steps": 5, "learning_rate": 7e-4, "ent_coef": 0.01, "vf_coef": 0.25,
                "optimizer": "RMSpropTFLike", "optimizer_eps": 1e-5}
    if algo == "ppo":
        return {"n_steps": 128, "n_epochs": 4, "batch_size": 256, "learning_rate": 2.5e-4,
                "clip_range": 0.1, "ent_coef": 0.01, "vf_coef": 0.5}
    raise UserError(f"unknown --algo {algo!r}; choose one of {', '.join(ALGOS)}")


def _build_model(cfg: TeacherRunConfig, env, device: torch.device, tensorboard_log: str):
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

    hp = cfg.hyperparameters
    if cfg.algo == "a2c":
        return A2C(
            "CnnPolicy", env, n_steps=hp["n_steps"], learning_rate=hp["learning_rate"],
            ent_coef=hp["ent_coef"], vf_coef=hp["vf_coef"],
            policy_kwargs={"optimizer_class": RMSpropTFLike, "optimizer_kwargs": {"eps": hp["optimizer_eps"]}},
            seed=cfg.seed, device=device, tensorboard_log=tensorboard_log, verbose=0,
        )
    return PPO(
        "CnnPolicy", env, n_steps=hp["n_steps"], n_epochs=hp["n_epochs"], batch_size=hp["batch_size"],
        learning_rate=hp["learning_rate"], clip_range=hp["clip_range"], ent_coef=hp["ent_coef"],
        vf_coef=hp["vf_coef"], seed=cfg.seed, device=device, tensorboard_log=tensorboard_log, verbose=0,
    )


def _algo_class(algo: str):
    from stable_baselines3 import A2C, PPO

    return {"a2c": A2C, "ppo": PPO}[algo]


def checkpoint_dir(out: Path) -> Path:
    """Where a run writes its periodic checkpoints, TensorBoard logs and monitor files."""
    return out.with_name(out.stem + "_run")


def _new_monitor_dir(run_dir: Path) -> Path:
    """A fresh ``monitor/<start time>`` folder per invocation: a resumed run adds its games' CSVs
    beside the earlier ones instead of overwriting them."""
    base = run_dir / "monitor" / time.strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


_STEP_RE = re.compile(r"step_(\d+)\.zip$")


def latest_checkpoint(run_dir: Path) -> tuple[Path, int] | None:
    """Newest ``step_N.zip`` in a run directory, with its step count."""
    found = []
    for path in run_dir.glob("step_*.zip"):
        match = _STEP_RE.search(path.name)
        if match:
            found.append((int(match.group(1)), path))
    if not found:
        return None
    steps, path = max(found)
    return path, steps


class _ProgressAndCheckpoints(BaseCallback):
    """tqdm bar with steps/s and recent whole-game score; periodic resumable checkpoints."""

    def __init__(self, total: int, start: int, run_dir: Path, every: int, on_save, deadline: float | None = None):
        super().__init__()
        self.total, self.start, self.run_dir, self.every, self.on_save = total, start, run_dir, every, on_save
        self.deadline = deadline
        self.bar: tqdm | None = None
        self.next_save = (start // every + 1) * every

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, initial=self.start, unit="step", unit_scale=True,
                        desc="teacher", dynamic_ncols=True, mininterval=2.0, file=sys.stderr)

    def _on_step(self) -> bool:
        assert self.bar is not None
        now = self.model.num_timesteps
        self.bar.update(now - self.bar.n)
        if self.n_calls % 50 == 0 and len(self.model.ep_info_buffer) > 0:
            scores = [ep["r"] for ep in self.model.ep_info_buffer]
            self.bar.set_postfix(score=f"{np.mean(scores):.1f}", games=len(scores), refresh=False)
        if now >= self.next_save:
            self.on_save(now)
            self.next_save = (now // self.every + 1) * self.every
        if self.deadline is not None and time.time() >= self.deadline:
            tqdm.write(f"time limit reached at {now} steps; saving so that --resume continues from here",
                       file=sys.stderr)
            return False
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _hardware() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    import os

    return f"{os.cpu_count()} CPU cores ({cpu}), {gpu}, torch {torch.__version__}"


def train_teacher(cfg: TeacherRunConfig, out: Path, resume: bool = False, force: bool = False,
                  max_seconds: float | None = None) -> Path:
    """Train (or continue) a teacher until ``cfg.steps`` environment steps; return the saved ``.zip``.

    A run keeps ``step_N.zip`` checkpoints (policy and optimizer state) in ``<out stem>_run/``
    beside ``out``; ``resume=True`` continues from the newest of them (or from ``out`` itself),
    so an interrupted or finished run can be extended on any machine. ``max_seconds`` stops
    training cleanly (and saves) after that much wall time, for machines lent by the hour.
    """
    t_called = time.time()
    cfg.game = atari.canonical_game(cfg.game)
    if cfg.steps < 1:
        raise UserError(f"--steps must be a positive number of environment steps, got {cfg.steps}")
    if cfg.algo not in ALGOS:
        raise UserError(f"unknown --algo {cfg.algo!r}; choose one of {', '.join(ALGOS)}")
    if cfg.vec_env not in VEC_ENVS:
        raise UserError(f"unknown --vec-env {cfg.vec_env!r}; choose one of {', '.join(VEC_ENVS)}")
    if cfg.envs < 1:
        raise UserError(f"--envs must be at least 1, got {cfg.envs}")
    if cfg.seed < 0:
        raise UserError(f"--seed must be 0 or more, got {cfg.seed}")
    if max_seconds is not None and not 0 < max_seconds < float("inf"):  # NaN fails both comparisons
        raise UserError(f"--max-minutes must be a positive number, got {max_seconds / 60:g}")
    cfg.hyperparameters = zoo_hyperparameters(cfg.algo)
    out = Path(out)
    if out.suffix != ".zip":
        raise UserError(f"--out must name a .zip file (stable-baselines3 format), got {out}")
    run_dir = checkpoint_dir(out)
    meta_path = run_dir / "run.json"
    if (out.exists() or run_dir.exists()) and not (resume or force):
        raise UserError(f"{out} (or its run directory {run_dir}) already exists; pass --resume to continue it "
                        "or --force to start over")
    device = resolve_device(cfg.device)
    if force and not resume:
        shutil.rmtree(run_dir, ignore_errors=True)
        out.unlink(missing_ok=True)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {run_dir}: {exc.strerror}; choose a writable --out") from None

    wall_before = 0.0
    start_from: tuple[Path, int] | None = None
    if resume:
        start_from = latest_checkpoint(run_dir)
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta["config"]["game"] != cfg.game or meta["config"]["algo"] != cfg.algo:
                raise UserError(f"--resume: {run_dir} holds a {meta['config']['algo']} run on "
                                f"{meta['config']['game']}, not {cfg.algo} on {cfg.game}; use another --out")
            wall_before = float(meta.get("wall_time_s", 0.0))
        if start_from is None and out.exists():
            start_from = (out, -1)
            if not meta_path.exists():  # e.g. a shipped checkpoint copied to a new machine
                from teachers.load import read_meta

                wall_before = float(read_meta(out).get("wall_time_s", 0.0))
        if start_from is None:
            print(f"--resume: nothing to resume in {run_dir}; starting a new run", file=sys.stderr)

    monitor_dir = _new_monitor_dir(run_dir)
    env = atari.make_vec_env(cfg.game, n_envs=cfg.envs, seed=cfg.seed, training=True,
                             monitor_dir=str(monitor_dir), subprocesses=cfg.vec_env == "subproc")
    tb_dir = str(run_dir / "tensorboard")
    if start_from is not None:
        model = _algo_class(cfg.algo).load(start_from[0], env=env, device=device, tensorboard_log=tb_dir)
        if model.observation_space.shape != atari.OBS_SHAPE or model.action_space.n != env.action_space.n:
            raise UserError(f"--resume: checkpoint {start_from[0]} does not fit {cfg.game}; use another --out")
    else:
        model = _build_model(cfg, env, device, tb_dir)
    done_steps = model.num_timesteps
    t_start = time.time()

    def wall_time() -> float:  # training time over all resumes, the basis of the card's figure
        return wall_before + time.time() - t_start

    def save(step_count: int) -> None:
        path = run_dir / f"step_{step_count}.zip"
        model.save(path)
        from teachers.load import write_meta

        write_meta(path, {"game": cfg.game, "algo": cfg.algo, "steps": int(step_count), "seed": cfg.seed,
                          "wall_time_s": wall_time()})
        for old, _ in sorted(((p, int(_STEP_RE.search(p.name).group(1))) for p in run_dir.glob("step_*.zip")),
                             key=lambda item: item[1])[:-2]:
            old.unlink()  # keep the two newest checkpoints
        meta = {"config": asdict(cfg), "steps_done": int(step_count), "wall_time_s": wall_time(),
                "hardware": _hardware(), "command": " ".join(sys.argv)}
        meta_path.write_text(json.dumps(meta, indent=2))

    if done_steps < cfg.steps:
        deadline = None if max_seconds is None else t_called + max_seconds
        callback = _ProgressAndCheckpoints(cfg.steps, done_steps, run_dir, cfg.checkpoint_every, save, deadline)
        model.learn(total_timesteps=cfg.steps - done_steps, callback=callback, reset_num_timesteps=False,
                    tb_log_name="teacher")
    save(model.num_timesteps)
    model.save(out)
    from teachers.load import write_meta

    write_meta(out, {"game": cfg.game, "algo": cfg.algo, "steps": int(model.num_timesteps), "seed": cfg.seed,
                     "wall_time_s": wall_time(),
                     "env_settings": atari.env_settings(training=True)})
    env.close()
    return out
