"""Episode splits and in-memory training data for distillation (DESIGN.md section 6).

Training and test sets are made of whole episodes, so no test state is a near-copy of a
training state from the same game. The training set (a fraction of the recording) is loaded
once into memory (or onto the GPU); test states are read in chunks when evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distill.recording.schema import (GRAD_SCALES, dataset_damaged, decode_gradients, episode_table, has_gradients,
                                      no_gradients_error, open_recording, read_range, require_finite)
from distill.environment.errors import UserError


@dataclass
class Split:
    """Row indices of the training and test states, and which episodes each holds."""

    train_rows: np.ndarray
    test_rows: np.ndarray
    train_episodes: np.ndarray
    test_episodes: np.ndarray


def split_by_episodes(episode_of_state: np.ndarray, fraction: float, seed: int = 0) -> Split:
    """Shuffle episodes with ``seed`` and add them to the training set until it holds about ``fraction * N`` states.

    Every other episode is the test set. Refuses fractions outside (0, 1) and splits that leave
    either set empty.
    """
    if not 0.0 < fraction < 1.0:
        raise UserError(f"--fraction must be strictly between 0 and 1, got {fraction}")
    n = len(episode_of_state)
    episodes, counts = np.unique(episode_of_state, return_counts=True)
    if len(episodes) < 2:
        raise UserError("the recording holds a single episode: a split by episodes needs at least two; record more states")
    order = np.random.default_rng(seed).permutation(len(episodes))
    target = fraction * n
    taken, total = [], 0
    for i in order:
        if total >= target:
            break
        taken.append(i)
        total += counts[i]
    if len(taken) == len(episodes):
        raise UserError(f"--fraction {fraction} leaves no test episode ({len(episodes)} episodes in the recording); "
                        "use a smaller fraction or a longer recording")
    train_eps = np.sort(episodes[taken])
    test_eps = np.setdiff1d(episodes, train_eps)
    is_train = np.isin(episode_of_state, train_eps)
    return Split(np.flatnonzero(is_train), np.flatnonzero(~is_train), train_eps, test_eps)


class TrainingData:
    """The training rows of a recording, in memory (uint8 frames, gradients as stored: float16/32 or int8)."""

    def __init__(self, path: Path, rows: np.ndarray, device: torch.device, with_gradients: bool = True):
        with open_recording(path) as f:
            if with_gradients and not has_gradients(f.attrs):
                raise no_gradients_error(path, f.attrs)
            arrays = {"obs": read_rows(f["obs"], rows), "logits": read_range(f["logits"])[rows]}
            if with_gradients:
                arrays |= {"proj_dirs": read_range(f["proj_dirs"])[rows], "proj_grads": read_rows(f["proj_grads"], rows)}
                if GRAD_SCALES in f:  # int8 maps, decoded batch by batch (a quarter of float32's memory)
                    arrays[GRAD_SCALES] = read_range(f[GRAD_SCALES])[rows]
        for name in ("logits", "proj_dirs", "proj_grads", GRAD_SCALES):  # a NaN would surface as a NaN loss, far
            if name in arrays:                                           # from its cause
                require_finite(path, name, arrays[name], rows)
        self.obs = torch.from_numpy(arrays["obs"]).to(device)
        self.logits = torch.from_numpy(arrays["logits"]).to(device)
        self.dirs = torch.from_numpy(arrays["proj_dirs"]).to(device) if with_gradients else None
        self.grads = torch.from_numpy(arrays["proj_grads"]).to(device) if with_gradients else None
        self.grad_scales = torch.from_numpy(arrays[GRAD_SCALES]).to(device) if GRAD_SCALES in arrays else None
        self.n = len(rows)
        self.device = device

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        obs = self.obs[idx].float().div_(255.0)
        if self.dirs is None:
            return obs, self.logits[idx], None, None
        scales = None if self.grad_scales is None else self.grad_scales[idx]
        return obs, self.logits[idx], self.dirs[idx], decode_gradients(self.grads[idx], scales)


def read_rows(dataset, rows: np.ndarray, block: int = 4096) -> np.ndarray:
    """Read sorted rows of a chunked dataset in contiguous blocks (much faster than fancy indexing); a damaged block
    is a one-line error naming the file, the dataset and the first damaged rows."""
    out = np.empty((len(rows), *dataset.shape[1:]), dtype=dataset.dtype)
    if len(rows) == 0:
        return out
    pos = 0
    start = 0
    while start < len(rows):
        lo = rows[start]
        end = np.searchsorted(rows, lo + block, side="left")
        hi = rows[end - 1] + 1
        try:
            chunk = dataset[lo:hi]
        except (OSError, RuntimeError, ValueError) as exc:
            raise dataset_damaged(dataset, exc, int(lo), int(hi)) from None
        out[pos:pos + end - start] = chunk[rows[start:end] - lo]
        pos += end - start
        start = end
    return out


def heldout_blocks(path: Path, rows: np.ndarray, device: torch.device, block: int = 1024):
    """Yield ``(obs_uint8, teacher_logits)`` on ``device`` for sorted ``rows``, ``block`` states at a time: held-out
    sets are too large to load at once."""
    with open_recording(path) as f:
        for start in range(0, len(rows), block):
            part = rows[start:start + block]
            obs = torch.from_numpy(read_rows(f["obs"], part)).to(device)
            logits = read_range(f["logits"], int(part[0]), int(part[-1]) + 1)[part - part[0]]
            require_finite(path, "logits", logits, part)
            yield obs, torch.from_numpy(logits).to(device)


def recording_episodes(path: Path) -> tuple[np.ndarray, dict]:
    """The per-state episode ids and attributes of a complete recording."""
    with open_recording(path) as f:
        return read_range(f["episode"]), dict(f.attrs) | {"n_states": int(f["committed"][0]), "episodes": episode_table(f)}
