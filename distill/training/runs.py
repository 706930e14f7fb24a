"""The run directory: the one reader and writer of what ``distill-train`` leaves on disk.

A run directory holds ``config.json`` (the settings and facts of the run), ``metrics.csv`` (one row per evaluation),
``metrics.json`` (final held-out metrics), ``latest.pt`` / ``best.pt`` checkpoints and TensorBoard logs. Settings
added after a run was made are read at the value it was made with (:data:`SETTINGS_ADDED_LATER`), so that older
runs still resume, compare and load.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch

from distill.environment.errors import UserError
from distill.training.config import GRADIENT_TERM_SETTINGS, NOT_COMPARED, TrainConfig
from distill.training.students import make_multigame_student, make_student

METRIC_FIELDS = ["step", "samples", "train_loss", "train_kl", "train_sobolev", "test_action_error", "test_kl",
                 "test_kl_student_teacher", "test_states", "seconds"]

# settings added to TrainConfig after runs were published, at the value those older runs were made with
SETTINGS_ADDED_LATER: dict[str, object] = {"lr_schedule": "constant", "lr_warmup": 0.0, "life_loss_weight": 1.0,
                                           "life_loss_window": 16, "alpha_schedule": "constant", "alpha_until": 1.0,
                                           "trust_checkpoint": False, "activation": "relu",
                                           "max_memory": None, "datasets": [], "game_mix": "equal"}


def read_run_config(config_json: Path) -> dict:
    """A run's config.json, its ``config`` completed with the values of settings added later."""
    try:
        info = json.loads(Path(config_json).read_text())
        info["config"] = {**SETTINGS_ADDED_LATER, **info["config"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{config_json} is not a readable run config ({exc}); train the run again") from None
    return info


def config_differences(config_json: Path, cfg: TrainConfig, ignore: tuple[str, ...] = ()) -> dict[str, object]:
    """The settings (name: stored value) in which the run whose config.json is ``config_json`` (a run directory's,
    or a published copy) differs from ``cfg``, so that runs made with other settings are neither resumed nor
    reused as if they were the same."""
    stored = read_run_config(config_json)["config"]
    ignore = (*ignore, *NOT_COMPARED)
    if cfg.alpha == 0:  # a KL-only run has no gradient term: older ones may have stored a teacher with it
        ignore = (*ignore, *GRADIENT_TERM_SETTINGS)
    diffs = {k: stored.get(k) for k, v in asdict(cfg).items()
             if k not in ignore and k not in ("dataset", "datasets") and stored.get(k) != v}
    if Path(str(stored.get("dataset"))).resolve() != Path(cfg.dataset).resolve():
        diffs["dataset"] = stored.get("dataset")
    if [Path(p).resolve() for p in stored.get("datasets") or []] != [Path(p).resolve() for p in cfg.datasets]:
        diffs["datasets"] = stored.get("datasets")
    return diffs


def check_run_dir(run_dir: Path, cfg: TrainConfig, resume: bool, force: bool) -> None:
    """Refuse to overwrite a run unless asked (``force``), and to resume one made with other settings."""
    if run_dir.exists() and any(run_dir.iterdir()):
        if resume:
            if not (run_dir / "config.json").exists():
                raise UserError(f"--resume: {run_dir} holds no config.json; it is not a training run")
            # constant schedules let a run be extended; a decaying one is defined by its step count
            extendable = cfg.lr_schedule == "constant" and cfg.without_unused_settings().alpha_schedule == "constant"
            free = ("steps", "eval_every") if extendable else ("eval_every",)
            diffs = config_differences(run_dir / "config.json", cfg, ignore=free)
            if diffs:
                raise UserError(f"--resume: {run_dir} was trained with other settings ({', '.join(diffs)}); "
                                "use the same flags or another --out")
        elif not force:
            raise UserError(f"{run_dir} already exists; pass --resume to continue it or --force to start over")
    elif resume:
        print(f"--resume: {run_dir} does not exist yet; starting a new run", file=sys.stderr)


def start_over(run_dir: Path) -> None:
    """Delete an old run for ``--force``: called only once every check of the new run has passed."""
    if run_dir.exists():
        shutil.rmtree(run_dir)


def write_failed(run_dir: Path, exc: Exception) -> UserError:
    """The one-line error for a write into a run directory that failed (a full disk, a lost mount)."""
    if isinstance(exc, OSError) and exc.errno:
        reason = os.strerror(exc.errno)
    elif shutil.disk_usage(run_dir if run_dir.is_dir() else run_dir.parent).free < 16 << 20:
        reason = "no space left on device"  # torch.save reports a full disk only as a short write
    else:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return UserError(f"writing to {run_dir} failed ({reason}); checkpoints written before are kept: free space and "
                     "rerun the same command with --resume")


@contextmanager
def writes_to(run_dir: Path) -> Iterator[None]:
    """Turn a failed write of the run's files into :func:`write_failed`'s one-line error."""
    try:
        yield
    except OSError as exc:
        raise write_failed(run_dir, exc) from None


def save_checkpoint(path: Path, student: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, best: float,
                    generator: torch.Generator | list[torch.Generator]) -> None:
    """Write a checkpoint atomically: a kill or a full disk never leaves a half-written one. A multi-game run
    passes one batch generator per game."""
    tmp = path.with_suffix(".tmp")
    batch = [g.get_state() for g in generator] if isinstance(generator, list) else generator.get_state()
    try:
        torch.save({"model": student.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "best": best,
                    "rng": {"batch": batch}}, tmp)
        tmp.replace(path)
    except (OSError, RuntimeError) as exc:  # torch.save reports a short write as a RuntimeError
        tmp.unlink(missing_ok=True)
        raise write_failed(path.parent, exc) from None


def damaged_member(path: Path) -> str | None:
    """The first record of a torch checkpoint (a zip archive) whose bytes fail its CRC-32, or None.

    ``torch.load`` does not check the CRCs ``torch.save`` writes, so a changed byte in a tensor would load as a
    different weight without a word; Python's zipfile checks them (about 1 ms per MB)."""
    try:
        with open(path, "rb") as handle:
            if handle.read(2) != b"PK":  # torch's legacy (pre-1.6) format: no CRCs to check
                return None
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except zipfile.BadZipFile:
        return "(the archive's directory)"
    except (OSError, EOFError, ValueError) as exc:
        return f"(unreadable: {exc})"


def read_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict:
    """A student checkpoint's contents, read with ``weights_only=True``: tensors, numbers and containers only, so
    that a checkpoint someone else made can never run code. Checkpoints of every earlier version hold only those."""
    bad = damaged_member(path)
    if bad is not None:
        raise UserError(f"the student checkpoint {path} is damaged ({bad} fails its CRC-32 check: its bytes changed "
                        "on disk or it was cut short); restore it from a copy, or train the run again")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # damaged, truncated, or holding objects that only unpickling would build
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise UserError(f"cannot read the student checkpoint {path} safely ({type(exc).__name__}: {first}); it is "
                        "damaged or was not written by distill-train: train the run again") from None
    if not isinstance(state, dict) or not {"model", "step"} <= set(state):
        raise UserError(f"{path} is not a distill-train checkpoint (no model and step inside); train the run again")
    return state


def load_checkpoint(path: Path, student: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    generator: torch.Generator | list[torch.Generator]) -> tuple[int, float]:
    """Restore a run's state from ``path``; returns its step and best capped test KL."""
    state = read_checkpoint(path)  # load_state_dict moves it to the device
    student.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    # the batch generators live on the CPU, whatever the device
    for gen, saved in zip(*((generator, state["rng"]["batch"]) if isinstance(generator, list)
                            else ([generator], [state["rng"]["batch"]])), strict=True):
        gen.set_state(saved)
    return int(state["step"]), float(state["best"])


def start_metrics_log(run_dir: Path, step: int, fields: list[str] = METRIC_FIELDS) -> float:
    """Start metrics.csv, or on resume drop the rows logged after the checkpoint at ``step``; returns the training
    seconds of earlier invocations, so that ``seconds`` counts the whole run."""
    path = run_dir / "metrics.csv"
    kept = []
    if step > 0 and path.exists():
        kept = [r for r in _read_metric_rows(path) if int(r["step"]) <= step]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        writer.writeheader()
        writer.writerows(kept)
    # checkpoints are written with the rows, so the last kept row is the checkpoint's
    return float(kept[-1]["seconds"]) if kept and kept[-1]["seconds"] else 0.0


def append_metrics(run_dir: Path, row: dict, fields: list[str] = METRIC_FIELDS) -> None:
    with (run_dir / "metrics.csv").open("a", newline="") as handle:
        csv.DictWriter(handle, fields).writerow(row)


def _read_metric_rows(path: Path) -> list[dict]:
    """The rows of a metrics.csv, or a one-line error for a damaged one."""
    try:
        with path.open() as handle:
            rows = list(csv.DictReader(handle))
        for r in rows:  # every cell must parse: a damaged row fails here, not deep inside a caller
            int(r["step"])
            [float(v) for v in r.values() if v not in ("", None)]
        return rows
    except (OSError, ValueError, KeyError, TypeError, csv.Error) as exc:
        raise UserError(f"{path} is damaged ({type(exc).__name__}: {exc}); train the run again "
                        "(or delete metrics.csv: --resume then starts its log afresh)") from None


def read_curve(run_dir: Path) -> list[dict]:
    """metrics.csv as numbers (empty cells left out)."""
    return [{k: float(v) for k, v in r.items() if v != ""} for r in _read_metric_rows(Path(run_dir) / "metrics.csv")]


def load_student(run_dir: str | Path, which: str = "latest",
                 device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """A trained student (eval mode, frozen) and its run's config.json, refusing directories that are not runs."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    checkpoint = run_dir / f"{which}.pt"
    if not config_path.exists() or not checkpoint.exists():
        raise UserError(f"{run_dir} is not a finished distill-train run (needs config.json and {which}.pt); "
                        "train one with `distill-train`")
    info = read_run_config(config_path)
    if "games" in info:  # a multi-game run: one output layer per game
        student = make_multigame_student(info["config"]["student"], {g["game"]: int(g["n_actions"]) for g in info["games"]},
                                         info["config"]["activation"])
    else:
        student = make_student(info["config"]["student"], int(info["n_actions"]), info["config"]["activation"])
    state = read_checkpoint(checkpoint, device)
    student.load_state_dict(state["model"])
    student.to(device).eval()
    for p in student.parameters():
        p.requires_grad_(False)
    return student, info
