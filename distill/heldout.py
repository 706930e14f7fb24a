"""Held-out metrics per episode, and a validation/test division of the held-out episodes.

Choosing a hyper-parameter (alpha, say) on the same held-out episodes that then report the result flatters it. With
per-episode sums the held-out episodes can be divided after training: pick on one part (validation), report on the
other (test), without training again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from distill.data import heldout_blocks
from distill.errors import UserError


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
