"""Held-out metrics of a trained run: action error and KL on the episodes it never trained on, in total and per
episode.

The metric itself is :func:`distill.training.metrics.per_state_metrics` (one implementation for training and
evaluation). Per-episode sums let the held-out episodes be divided after training (choose a setting on one part,
report on the other) and let two runs be compared episode by episode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distill.environment.errors import UserError
from distill.training.data import heldout_blocks, recording_episodes, split_by_episodes
from distill.training.metrics import per_state_metrics, summarize


def run_test_rows(config: dict, dataset: Path | None = None) -> tuple[Path, np.ndarray, np.ndarray]:
    """The recording, its per-state episode ids and the held-out rows of the run whose ``config`` (config.json's
    ``config``) is given; refuses a recording of another game."""
    dataset = Path(dataset or config["dataset"])
    episode_of_state, attrs = recording_episodes(dataset)
    if str(attrs["game"]) != config["game"]:
        raise UserError(f"{dataset} is a recording of {attrs['game']}, not {config['game']}; pass the recording "
                        "the student was trained on")
    rows = split_by_episodes(episode_of_state, config["fraction"], config["split_seed"]).test_rows
    return dataset, episode_of_state, rows


def heldout_metrics(student: torch.nn.Module, config: dict, device: torch.device | str = "cpu",
                    dataset: Path | None = None) -> dict:
    """A student's action error and KL (both directions) on every held-out state of its run's split."""
    dataset, _, rows = run_test_rows(config, dataset)
    return summarize(per_state_metrics(student, heldout_blocks(dataset, rows, torch.device(device))))


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
    """Sum the per-state metrics of ``rows`` (sorted) by episode."""
    per_state = per_state_metrics(student, heldout_blocks(dataset, rows, device))
    episodes, index = np.unique(episode_of_state[rows], return_inverse=True)
    return EpisodeSums(episodes, np.bincount(index), np.bincount(index, weights=per_state["error"]),
                       np.bincount(index, weights=per_state["kl"]))
