"""Training rows streamed from the recording: the same batches, hence the same student, as the in-memory path."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from distill.environment.errors import UserError
from distill.training.loop import train
from distill.training.streaming import read_scattered, training_bytes
from training_helpers import cfg, train_until

STREAM = 1e-6  # GiB: no recording fits, so every run with it streams


def final_state(run) -> dict:
    return torch.load(run / "latest.pt", weights_only=False)["model"]


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_streaming_gives_the_same_batches_and_the_same_student_as_memory(recording, tmp_path, alpha):
    memory, streamed = tmp_path / "memory", tmp_path / "streamed"
    a = train(cfg(recording, steps=12, alpha=alpha), memory, torch.device("cpu"), progress=False)
    b = train(cfg(recording, steps=12, alpha=alpha, max_memory=STREAM), streamed, torch.device("cpu"), progress=False)
    for name, value in final_state(memory).items():
        assert torch.equal(value, final_state(streamed)[name]), name
    assert a == b
    assert json.loads((streamed / "config.json").read_text())["training_rows"] == "streamed from the recording"
    assert json.loads((memory / "config.json").read_text())["training_rows"] == "in memory"


def test_a_streamed_run_resumes_to_the_uninterrupted_result(recording, tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    c = cfg(recording, steps=20, alpha=1.0, max_memory=STREAM)
    train(c, straight, torch.device("cpu"), progress=False)
    train_until(c, stopped, 10)
    # resumed in memory: how the rows are read is not a setting of the run, and the draws go on where they stopped
    train(cfg(recording, steps=20, alpha=1.0), stopped, torch.device("cpu"), resume=True, progress=False)
    for name, value in final_state(straight).items():
        assert torch.equal(value, final_state(stopped)[name]), name


def test_scattered_reads_match_fancy_indexing_with_repeats_and_any_order(recording):
    rows = np.array([37, 2, 37, 399, 0, 16, 15, 250])
    with h5py.File(recording, "r") as f:
        for name in ("obs", "logits", "proj_grads"):
            expected = np.stack([f[name][r] for r in rows])
            assert np.array_equal(read_scattered(f[name], rows), expected), name


def test_memory_budget_and_bad_values(recording):
    attrs = {"n_actions": 4, "projections": 1, "grad_dtype": "float16"}
    assert training_bytes(10, attrs, with_gradients=False) == 10 * (28224 + 16)
    assert training_bytes(10, attrs, with_gradients=True) == 10 * (28224 + 16 + 16 + 2 * 28224)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(UserError, match="--max-memory is in GiB and must be positive"):
            cfg(recording, max_memory=bad).validate()
