"""The Python API: the four steps of the pipeline as functions, with the same defaults as the commands.

    from distill import load_teacher, record, train, evaluate

    teacher = load_teacher("Breakout")                       # the shipped teacher
    recording = record(teacher, states=2000, out="data/breakout-2k.h5")
    metrics = train(recording, "data/runs/sobolev", alpha=1.0, fraction=0.5, steps=300)
    report = evaluate("data/runs/sobolev", episodes=2)     # held-out metrics and game scores, teacher alongside

Each function is a thin layer over the stage that does the work (:mod:`teachers.load`, :mod:`distill.recording`,
:mod:`distill.training`, :mod:`distill.evaluation`): what ``distill-record``, ``distill-train`` and ``distill-eval``
run.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import torch

from distill.environment.device import exact_float32, resolve_device
from distill.environment.errors import UserError
from distill.recording.writer import RecordConfig, default_recording_path
from teachers.teacher import Teacher
from distill.training.config import TrainConfig

__all__ = ["load_teacher", "record", "train", "evaluate", "RecordConfig", "TrainConfig", "Teacher"]


def load_teacher(source: str | Path | None = "Breakout", game: str | None = None, device: str = "cpu",
                 temperature: float = 0.01, trust_checkpoint: bool = False) -> Teacher:
    """A teacher policy: a shipped one by game name (``"Breakout"``, ``"Pong"``, ``"SpaceInvaders"``), a
    stable-baselines3 ``.zip``, an rl-baselines3-zoo run or hub folder, a CleanRL Atari checkpoint, or (with
    ``trust_checkpoint``) a TorchScript file. It is a ``torch.nn.Module`` taking scaled frame stacks
    ``[B, 4, 84, 84]`` and returning logits, with ``.game``, ``.n_actions`` and ``.sha256``. Nothing from the file
    is unpickled or run unless ``trust_checkpoint=True`` (SB3's own loader). For a network already in memory, use
    :meth:`Teacher.from_module`."""
    from teachers.load import load_teacher as _load

    return _load(source, game=game, temperature=temperature, device=resolve_device(device),
                 trust_checkpoint=trust_checkpoint)


def record(teacher, states: int = 100_000, out: str | Path | None = None, *, projections: int = 1,
           envs: int = 8, seed: int = 0, resume: bool = False, force: bool = False, progress: bool = True,
           **settings) -> Path:
    """Follow ``teacher`` (a loaded teacher, or anything :func:`load_teacher` accepts) for ``states`` states and
    store frames, logits and ``projections`` projected input gradients per state in HDF5; returns the file's path
    (default ``data/recordings/<game>-<time>.h5``). Other ``settings`` are :class:`RecordConfig` fields
    (``grad_dtype``, ``behaviour``, ``epsilon``, ``codec``)."""
    if not isinstance(teacher, torch.nn.Module):
        teacher = load_teacher(teacher)
    from distill.recording.writer import record as _record

    cfg = RecordConfig(game=teacher.game, states=states, projections=projections, envs=envs, seed=seed, **settings)
    cfg.validate()
    out = Path(out) if out is not None else default_recording_path(teacher.game)
    exact_float32()  # a GPU recording reproduces a CPU one with the same seed
    device = next(teacher.parameters()).device
    _record(cfg, teacher, out, resume=resume, force=force, device=device, progress=progress)
    return out


def train(dataset: str | Path | list[str | Path], run_dir: str | Path, *, device: str = "auto",
          resume: bool = False, force: bool = False, progress: bool = True, **options) -> dict:
    """Distil the recording ``dataset`` into a student in ``run_dir``; returns the final held-out metrics
    (``test_action_error``, ``test_kl``, ...; also in ``run_dir/metrics.json``). ``options`` are
    :class:`TrainConfig` fields with their command-line defaults: ``alpha`` (1.0; 0 = KL only), ``fraction`` (0.1),
    ``student``, ``steps``, ``seed``, ... A list of recordings, one per game, trains one multi-game student (shared
    trunk, one output layer per game, batches mixed by ``game_mix``); its metrics are means over games, with each
    game's under ``games``."""
    from distill.recording.schema import open_recording
    from distill.training.loop import train as _train
    from distill.training.multigame import multigame_config, train_multigame

    known = {f.name for f in fields(TrainConfig)} - {"dataset", "game", "datasets"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"unknown training option {unknown[0]!r}; choose from {', '.join(sorted(known))}")
    if isinstance(dataset, (list, tuple)):
        if len(dataset) == 1:
            dataset = dataset[0]
        else:
            cfg = multigame_config(list(dataset), **options)
            return train_multigame(cfg, Path(run_dir), resolve_device(device), resume=resume, force=force,
                                   progress=progress)
    with open_recording(dataset) as f:
        game = str(f.attrs["game"])
    cfg = TrainConfig(dataset=str(dataset), game=game, **options).without_unused_settings()
    return _train(cfg, Path(run_dir), resolve_device(device), resume=resume, force=force, progress=progress)


def evaluate(run_dir: str | Path, *, episodes: int = 30, mode: str = "both", held_out: bool = True,
             with_teacher: bool = True, checkpoint: str = "latest", dataset: str | Path | None = None,
             seed: int = 0, envs: int = 4, device: str = "auto", verbose: bool = True,
             trust_checkpoint: bool = False) -> dict:
    """Evaluate a trained run: held-out action error and KL on its own recording's held-out episodes (under
    ``held_out``), game scores over ``episodes`` games per mode (``sample``, ``greedy`` or ``both``; 0 = no play)
    and the teacher's scores alongside with student/teacher ratios (``teacher``, ``student_over_teacher``). A
    multi-game run reports each of its games under ``games``, in the same shape."""
    from distill.evaluation.report import evaluate_student

    report, _ = evaluate_student(run_dir, checkpoint, episodes=episodes, mode=mode, seed=seed, envs=envs,
                                 held_out=held_out, dataset=dataset, with_teacher=with_teacher,
                                 device=resolve_device(device), echo=print if verbose else (lambda _: None),
                                 trust_checkpoint=trust_checkpoint)
    return report
