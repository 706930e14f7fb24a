"""Training under torchrun: two Gloo processes take the steps one process takes with the same global batch, the
Sobolev term's double backward included, and a run they interrupt resumes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

from distill.training.distributed import Ranks
from distill.training.loop import train
from training_helpers import constant_cfg

FLAGS = ["--game", "Breakout", "--student", "small", "--batch-size", "8", "--eval-every", "3", "--test-cap", "64",
         "--fraction", "0.5", "--alpha", "1", "--lr-schedule", "constant", "--lr-warmup", "0", "--device", "cpu"]


def torchrun(recording, out, *extra: str, processes: int = 2) -> subprocess.CompletedProcess:
    """distill-train under torchrun on ``recording`` (a list of them: a multi-game student)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    datasets = [str(r) for r in recording] if isinstance(recording, list) else [str(recording)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           "-m", "distill.cli.train", "--dataset", *datasets, "--out", str(out), *FLAGS, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def parameters(run) -> list[torch.Tensor]:
    return list(torch.load(run / "latest.pt", weights_only=False)["model"].values())


def train_losses(run) -> list[float]:
    with (run / "metrics.csv").open() as handle:
        return [float(r["train_loss"]) for r in csv.DictReader(handle)]


def test_two_gloo_processes_match_one_process_and_resume(recording, tmp_path):
    single = tmp_path / "single"
    train(constant_cfg(recording, steps=6, batch_size=8, eval_every=3, alpha=1.0), single, torch.device("cpu"),
          progress=False)

    # two processes, stopped after 3 steps and resumed to 6: each trains on half of every global batch of 8
    ddp = tmp_path / "ddp"
    first = torchrun(recording, ddp, "--steps", "3")
    assert first.returncode == 0, first.stderr[-3000:]
    second = torchrun(recording, ddp, "--steps", "6", "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "x 2 processes" in second.stderr

    # float sums in another order: differences far below one Adam step (lr 1e-3 here); Adam's normalisation can
    # turn a rounding difference in a near-zero gradient into a few 1e-6 in a weight
    for a, b in zip(parameters(single), parameters(ddp), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    # the logged training losses are means over both processes' slices: those of the one process
    assert train_losses(ddp) == pytest.approx(train_losses(single), rel=1e-4)
    import json

    info = json.loads((ddp / "config.json").read_text())
    assert info["processes"] == 2 and info["config"]["batch_size"] == 8  # the global batch


def test_a_global_batch_that_does_not_split_is_a_one_line_error(recording, tmp_path):
    result = torchrun(recording, tmp_path / "odd", "--steps", "3", "--batch-size", "7")
    assert result.returncode != 0
    assert "error: --batch-size 7 does not split evenly over 2 processes; pass a multiple of 2" in result.stderr
    assert not (tmp_path / "odd").exists()


def test_local_shares_are_disjoint_and_cover_the_global_batch():
    shares = [Ranks(r, 4, r).local_share(64) for r in range(4)]
    assert [list(range(64))[s] for s in shares] == [list(range(16 * r, 16 * (r + 1))) for r in range(4)]
    assert Ranks().local_share(64) == slice(0, 64)
