"""Training rows read from the recording as training goes, for recordings larger than the memory budget.

The in-memory path (:class:`distill.training.data.TrainingData`) loads the training rows once. When they do not fit
``--max-memory``, :class:`StreamingData` reads each batch from the HDF5 file in ``torch.utils.data`` worker
processes, several batches ahead of the training step. The workers read the very rows the in-memory path would use:
a sampler replays the training loop's own generator (the batch draws, and the live teacher's direction draws that
come between them), and every batch is checked against the loop's draw. Each batch's rows are grouped by HDF5 chunk
and every chunk touched is read and decompressed once, whole (chunk-aligned reads); the draws themselves are uniform
over all training rows, so shuffling crosses every chunk.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from distill.environment.errors import UserError
from distill.recording.schema import (GRAD_SCALES, dataset_damaged, decode_gradients, has_gradients,
                                      no_gradients_error, open_recording, read_range, require_finite)
from distill.sobolev import random_unit_vectors

GiB = 1024 ** 3


def training_bytes(n_rows: int, attrs: dict, with_gradients: bool) -> int:
    """Bytes the in-memory path holds for ``n_rows`` training rows (frames, logits, and directions and gradients)."""
    frame = 4 * 84 * 84  # uint8
    per_row = frame + 4 * int(attrs["n_actions"])
    if with_gradients:
        k = int(attrs["projections"])
        grad_dtype = str(attrs.get("grad_dtype", "float16"))
        per_row += k * 4 * int(attrs["n_actions"]) + k * frame * np.dtype(grad_dtype).itemsize
        if grad_dtype == "int8":  # one float32 scale per map
            per_row += 4 * k
    return n_rows * per_row


def default_memory_budget() -> float:
    """Half of this machine's memory, in GiB: room for the model, the held-out reads and the rest of the system."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2 / GiB
    except (ValueError, OSError, AttributeError):
        return 8.0


def draw_batch(generator: torch.Generator, n: int, batch_size: int, weights: torch.Tensor | None) -> torch.Tensor:
    """One global batch of positions in the training rows: uniform with replacement, or by ``weights``."""
    if weights is None:
        return torch.randint(n, (batch_size,), generator=generator)
    return torch.multinomial(weights, batch_size, replacement=True, generator=generator)


class _Draws(Sampler):
    """The training loop's batch draws, replayed from a copy of its generator (this rank's share of each)."""

    def __init__(self, state: torch.Tensor, n: int, batch_size: int, weights: torch.Tensor | None, steps: int,
                 share: slice, live_directions: tuple[int, int] | None):
        self.state, self.n, self.batch_size, self.weights = state, n, batch_size, weights
        self.steps, self.share, self.live_directions = steps, share, live_directions

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        generator = torch.Generator().set_state(self.state)
        for _ in range(self.steps):
            idx = draw_batch(generator, self.n, self.batch_size, self.weights)[self.share]
            if self.live_directions is not None:  # the loop draws the live teacher's directions next
                random_unit_vectors(self.batch_size, *self.live_directions, generator=generator)
            yield idx


class _RecordingRows(Dataset):
    """``dataset[positions]``: the batch of training rows at those positions, read chunk by chunk."""

    def __init__(self, path: Path, rows: np.ndarray, with_gradients: bool):
        self.path, self.rows, self.with_gradients = Path(path), rows, with_gradients
        self._file = None  # opened in each worker: an HDF5 handle does not survive a fork

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, positions: torch.Tensor) -> dict:
        try:
            return self._read(positions)
        except UserError as exc:  # told to the training process as one line (a raise here would arrive wrapped)
            return {"positions": positions, "error": str(exc)}

    def _read(self, positions: torch.Tensor) -> dict:
        if self._file is None:
            self._file = open_recording(self.path)
        rows = self.rows[positions.numpy()]
        names = ["obs", "logits"] + (["proj_dirs", "proj_grads"] if self.with_gradients else [])
        if self.with_gradients and GRAD_SCALES in self._file:  # int8 maps and their scales
            names.append(GRAD_SCALES)
        batch = {"positions": positions}
        for name in names:
            values = read_scattered(self._file[name], rows)
            if name != "obs":  # a NaN here would surface as a NaN loss, far from its cause
                require_finite(self.path, name, values, rows)
            batch[name] = torch.from_numpy(values)
        return batch


def read_scattered(dataset, rows: np.ndarray) -> np.ndarray:
    """``dataset[rows]`` for unsorted rows with repeats, reading each chunk they touch once and whole; a damaged
    chunk is a one-line error naming the file, the dataset and its rows."""
    unique, inverse = np.unique(rows, return_inverse=True)
    out = np.empty((len(unique), *dataset.shape[1:]), dtype=dataset.dtype)
    chunk = dataset.chunks[0] if dataset.chunks else len(dataset)
    starts = unique // chunk * chunk
    for lo in np.unique(starts):
        hi = min(int(lo) + chunk, len(dataset))
        try:
            block = dataset[int(lo):hi]
        except (OSError, RuntimeError, ValueError) as exc:
            raise dataset_damaged(dataset, exc, int(lo), hi) from None
        here = starts == lo
        out[here] = block[unique[here] - lo]
    return out[inverse]


class StreamingData:
    """The training rows of a recording, read batch by batch in worker processes (same interface as
    :class:`~distill.training.data.TrainingData`: ``n`` and ``batch(idx)``)."""

    def __init__(self, path: Path, rows: np.ndarray, device: torch.device, with_gradients: bool = True):
        with open_recording(path) as f:
            if with_gradients and not has_gradients(f.attrs):
                raise no_gradients_error(path, f.attrs)
            read_range(f["logits"], 0, 1)  # a file that cannot be read fails here, not in a worker
        self.path, self.rows, self.device, self.with_gradients = Path(path), rows, device, with_gradients
        self.n = len(rows)
        self._batches = None

    def start(self, generator: torch.Generator, batch_size: int, weights: torch.Tensor | None, steps: int,
              share: slice, live_directions: tuple[int, int] | None = None, workers: int | None = None) -> None:
        """Start the workers on the next ``steps`` draws of ``generator`` (its state now, before the first draw)."""
        if workers is None:  # one per core this process may use, at most 4 (measured: scripts/bench_train.py)
            cores = (os.cpu_count() or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
            workers = max(1, min(4, cores))
        loader = DataLoader(_RecordingRows(self.path, self.rows, self.with_gradients), batch_size=None,
                            sampler=_Draws(generator.get_state(), self.n, batch_size, weights, steps, share,
                                           live_directions),
                            num_workers=workers, prefetch_factor=4 if workers else None, persistent_workers=False,
                            pin_memory=self.device.type == "cuda",
                            multiprocessing_context=None if not workers else "spawn" if self.device.type == "cuda"
                            else "fork")
        self._batches = iter(loader)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The next prefetched batch, which must be the one at ``idx`` (the loop's own draw)."""
        if self._batches is None:
            raise RuntimeError("StreamingData.start must be called before the first batch")
        batch = next(self._batches)
        if "error" in batch:
            raise UserError(batch["error"])
        if not torch.equal(batch["positions"], idx.cpu()):
            raise RuntimeError("streamed batch differs from the training loop's draw (the sampler lost step)")
        obs = batch["obs"].to(self.device, non_blocking=True).float().div_(255.0)
        logits = batch["logits"].to(self.device, non_blocking=True)
        if not self.with_gradients:
            return obs, logits, None, None
        scales = batch.get(GRAD_SCALES)
        return (obs, logits, batch["proj_dirs"].to(self.device, non_blocking=True),
                decode_gradients(batch["proj_grads"].to(self.device, non_blocking=True),
                                 None if scales is None else scales.to(self.device, non_blocking=True)))

    def close(self) -> None:
        self._batches = None  # the loader's workers exit with their iterator
