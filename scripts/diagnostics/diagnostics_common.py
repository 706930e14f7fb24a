"""What the diagnostic scripts share: finding finished runs, sampled held-out logits, cached per-episode sums,
validation/test divisions of the held-out episodes and the life-loss split.

The scripts in this folder import it as a sibling module (``from diagnostics_common import ...``): Python puts a
script's own folder on its import path.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from distill.environment.errors import UserError
from distill.evaluation.rollout import MODES
from distill.evaluation.heldout import EpisodeSums, episode_sums
from distill.recording.lives import before_life_loss, read_lives
from distill.recording.schema import open_recording
from distill.training.data import heldout_blocks, read_rows, recording_episodes, split_by_episodes
from distill.training.metrics import per_state_metrics
from distill.training.runs import load_student

log = logging.getLogger(__name__)


def sampled_heldout_states(cfg: dict, states: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames (uint8) and teacher logits of a fixed-seed sample of ``states`` held-out states of the run whose
    config is ``cfg`` (the same states for every run with the same recording, fraction and split seed)."""
    dataset = Path(cfg["dataset"])
    episodes, _ = recording_episodes(dataset)
    rows = split_by_episodes(episodes, cfg["fraction"], cfg["split_seed"]).test_rows
    rows = np.sort(np.random.default_rng(0).choice(rows, min(states, len(rows)), replace=False))
    with open_recording(dataset) as f:
        return torch.from_numpy(read_rows(f["obs"], rows)), torch.from_numpy(f["logits"][:][rows])


@torch.no_grad()
def sampled_heldout_logits(run: Path, states: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """The run's config, and student and teacher logits on a fixed-seed sample of ``states`` of its own held-out
    states (latest checkpoint): the common input of the per-run diagnostics in scripts/."""
    student, info = load_student(run, which="latest")
    cfg = info["config"]
    obs, teacher_logits = sampled_heldout_states(cfg, states)
    student_logits = torch.cat([student(obs[i:i + 512].float() / 255) for i in range(0, len(obs), 512)])
    return cfg, student_logits, teacher_logits


def divide_heldout(episodes: np.ndarray, states: np.ndarray, val_share: float = 0.5,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle the held-out episodes with ``seed`` and give them to validation until it holds ``val_share`` of the
    held-out states; the rest is the test part. Both parts keep at least one episode."""
    if not 0.0 < val_share < 1.0:
        raise UserError(f"--val-share must be strictly between 0 and 1, got {val_share}")
    if len(episodes) < 2:
        raise UserError("a single held-out episode cannot be divided into validation and test; "
                        "train on a smaller --fraction or record more states")
    order = np.random.default_rng(seed).permutation(len(episodes))
    target, total, taken = val_share * states.sum(), 0, []
    for i in order[:-1]:  # the last one always stays in the test part
        if total >= target:
            break
        taken.append(i)
        total += states[i]
    val = np.sort(episodes[taken])
    return val, np.setdiff1d(episodes, val)


def finished_runs(paths: list[Path], flag: str = "--runs") -> list[Path]:
    """Run folders under each path (a grid's runs/, a folder of runs, or the run itself) that hold a finished run
    with a checkpoint."""
    runs = []
    for path in paths:
        if not path.exists():
            raise UserError(f"{flag} {path} does not exist; pass a figure-4 grid folder or a distill-train run folder")
        folder = path / "runs" if (path / "runs").is_dir() else path  # a grid, or any folder of run folders
        candidates = [path] if (path / "config.json").exists() else sorted(p for p in folder.glob("*") if p.is_dir())
        for run in candidates:
            if all((run / name).exists() for name in ("config.json", "metrics.json", "latest.pt")):
                runs.append(run)
            else:
                log.warning("skip %s: not a finished run with latest.pt", run)  # the scripts go on with the rest
    if not runs:
        raise UserError("no finished run with a checkpoint among the folders given; train some with scripts/figure4.py")
    return runs


def cached_episode_sums(run: Path, dataset: Path, episode_of_state: np.ndarray, cache: Path,
                        device: torch.device) -> EpisodeSums:
    """Per-episode held-out sums of a run's latest checkpoint, from the cache when the checkpoint is unchanged."""
    stat = (run / "latest.pt").stat()
    key = hashlib.sha256(f"{run.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:20]
    path = cache / f"{run.name}-{key}.json"
    if path.exists():
        return EpisodeSums.from_json(json.loads(path.read_text()))
    student, info = load_student(run, device=device)
    cfg = info["config"]
    split = split_by_episodes(episode_of_state, cfg["fraction"], cfg["split_seed"])
    sums = episode_sums(student, dataset, split.test_rows, episode_of_state, device)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sums.to_json()))
    return sums


def life_loss_split(run: Path, window: int, device: torch.device, dataset: Path | None = None) -> dict:
    """One run's held-out action error and KL(pi* || pi) in the ``window`` states up to each lost life, elsewhere, and
    on all its held-out states (the recording needs its lives counts: ``distill-add-lives``)."""
    student, info = load_student(run, device=device)
    cfg = info["config"]
    dataset = Path(dataset or cfg["dataset"])
    episode_of_state, _ = recording_episodes(dataset)
    marked = before_life_loss(read_lives(dataset), episode_of_state, window)
    rows = split_by_episodes(episode_of_state, cfg["fraction"], cfg["split_seed"]).test_rows
    per_state = per_state_metrics(student, heldout_blocks(dataset, rows, device))
    errors, kls = per_state["error"], per_state["kl"]
    before = marked[rows]
    if not before.any():
        raise UserError(f"no held-out state of {run} lies before a lost life: nothing to compare")

    def part(mask: np.ndarray) -> dict:
        return {"states": int(mask.sum()), "action_error": float(errors[mask].mean()), "kl": float(kls[mask].mean())}

    return {"run": str(run), "alpha": cfg["alpha"], "fraction": cfg["fraction"], "seed": cfg["seed"],
            "life_loss_weight": cfg["life_loss_weight"], "window": window,
            "before_lost_life": part(before), "elsewhere": part(~before), "all": part(np.ones_like(before))}


@torch.no_grad()
def live_first_layer_channels(model: torch.nn.Module, obs_scaled: torch.Tensor) -> int:
    """How many first-layer conv channels fire (ReLU output > 0) somewhere on at least one of the states.

    A channel that never fires passes no gradient to its weights and stays dead; students trained without a
    learning-rate warm-up lost most of their first layer this way on Pong (docs/figure4.md), so this is the
    diagnostic for it.
    """
    activations = model.features[1](model.features[0](obs_scaled))  # [B, C, H, W] after the first ReLU
    return int((activations > 0).flatten(2).any(2).any(0).sum())


def add_play_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of the diagnostics that play games with a student and its teacher."""
    p.add_argument("--teacher", default=None, help="the recording's teacher (default: the shipped one of the game)")
    p.add_argument("--episodes", type=int, default=12, help="whole games per policy (default 12)")
    p.add_argument("--mode", choices=MODES, default="sample", help="sample or greedy actions (default sample)")
    p.add_argument("--envs", type=int, default=6, help="games played side by side (default 6)")
    p.add_argument("--seed", type=int, default=0)


def add_window_argument(p: argparse.ArgumentParser) -> None:
    """--window: the states up to each lost life that the life-loss diagnostics single out."""
    p.add_argument("--window", type=int, default=16, help="states up to each lost life (default 16: about 1 s)")


def checked_window(window: int) -> int:
    if window < 1:
        raise UserError(f"--window must be at least 1, got {window}")
    return window


def write_reports(path: Path | None, reports: list, indent: int = 2) -> int:
    """Write the reports to ``--json`` if given; the exit code of a diagnostic that got this far."""
    if path:
        path.write_text(json.dumps(reports, indent=indent))
    return 0
