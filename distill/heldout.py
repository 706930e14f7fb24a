"""Held-out metrics per episode, and a validation/test division of the held-out episodes.

Choosing a hyper-parameter (alpha, say) on the same held-out episodes that then report the result flatters it. With
per-episode sums the held-out episodes can be divided after training: pick on one part (validation), report on the
other (test), without training again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from distill.data import _read_rows, heldout_blocks, recording_episodes, split_by_episodes
from distill.dataset_file import open_recording
from distill.errors import UserError
from distill.lives import before_life_loss, read_lives
from distill.train import load_student

log = logging.getLogger(__name__)


@torch.no_grad()
def per_state_metrics(student: torch.nn.Module, dataset: Path, rows: np.ndarray, device: torch.device,
                      block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``rows`` (sorted): 1.0 where the student's argmax differs from the teacher's, and KL(pi* || pi) in
    nats (the direction of the reported test KL)."""
    student.eval()
    errors, kls = [], []
    for obs, teacher in heldout_blocks(dataset, rows, device, block):
        logits = student(obs.float().div_(255))
        log_p_teacher, log_p_student = F.log_softmax(teacher.float(), 1), F.log_softmax(logits.float(), 1)
        kls.append((log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(1).cpu().numpy())
        errors.append((logits.argmax(1) != teacher.argmax(1)).float().cpu().numpy())
    student.train()
    return np.concatenate(errors).astype(np.float64), np.concatenate(kls).astype(np.float64)


def sampled_heldout_states(cfg: dict, states: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames (uint8) and teacher logits of a fixed-seed sample of ``states`` held-out states of the run whose
    config is ``cfg`` (the same states for every run with the same recording, fraction and split seed)."""
    dataset = Path(cfg["dataset"])
    episodes, _ = recording_episodes(dataset)
    rows = split_by_episodes(episodes, cfg["fraction"], cfg["split_seed"]).test_rows
    rows = np.sort(np.random.default_rng(0).choice(rows, min(states, len(rows)), replace=False))
    with open_recording(dataset) as f:
        return torch.from_numpy(_read_rows(f["obs"], rows)), torch.from_numpy(f["logits"][:][rows])


@torch.no_grad()
def sampled_heldout_logits(run: Path, states: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """The run's config, and student and teacher logits on a fixed-seed sample of ``states`` of its own held-out
    states (latest checkpoint): the common input of the per-run diagnostics in scripts/."""
    student, info = load_student(run, which="latest")
    cfg = info["config"]
    obs, teacher_logits = sampled_heldout_states(cfg, states)
    student_logits = torch.cat([student(obs[i:i + 512].float() / 255) for i in range(0, len(obs), 512)])
    return cfg, student_logits, teacher_logits


@dataclass
class EpisodeSums:
    """Per held-out episode: states, argmax disagreements and summed KL; metrics of any set of episodes follow."""

    episodes: np.ndarray
    states: np.ndarray
    errors: np.ndarray
    kl: np.ndarray

    def metrics(self, episodes: np.ndarray) -> dict:
        take = np.isin(self.episodes, episodes)
        if not take.any():
            raise UserError("no held-out episode in this part; use a larger recording or another --val-share")
        n = self.states[take].sum()
        return {"test_action_error": float(self.errors[take].sum() / n), "test_kl": float(self.kl[take].sum() / n),
                "test_states": int(n)}

    def to_json(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("episodes", "states", "errors", "kl")}

    @classmethod
    def from_json(cls, data: dict) -> "EpisodeSums":
        return cls(**{k: np.asarray(data[k]) for k in ("episodes", "states", "errors", "kl")})


def episode_sums(student: torch.nn.Module, dataset: Path, rows: np.ndarray, episode_of_state: np.ndarray,
                 device: torch.device) -> EpisodeSums:
    """Sum the per-state metrics of ``rows`` by episode."""
    errors, kls = per_state_metrics(student, dataset, rows, device)
    episodes, index = np.unique(episode_of_state[rows], return_inverse=True)
    return EpisodeSums(episodes, np.bincount(index), np.bincount(index, weights=errors),
                       np.bincount(index, weights=kls))


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
    errors, kls = per_state_metrics(student, dataset, rows, device)
    before = marked[rows]
    if not before.any():
        raise UserError(f"no held-out state of {run} lies before a lost life: nothing to compare")

    def part(mask: np.ndarray) -> dict:
        return {"states": int(mask.sum()), "action_error": float(errors[mask].mean()), "kl": float(kls[mask].mean())}

    return {"run": str(run), "alpha": cfg["alpha"], "fraction": cfg["fraction"], "seed": cfg["seed"],
            "life_loss_weight": cfg.get("life_loss_weight", 1.0), "window": window,
            "before_lost_life": part(before), "elsewhere": part(~before), "all": part(np.ones_like(before))}
