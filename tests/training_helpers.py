"""Shared by the training, evaluation and diagnostics tests: small training configs, and a training stopped as a
kill would stop it."""

from __future__ import annotations

import pytest
import torch

from distill.training.config import TrainConfig
from distill.training.loop import train


def cfg(recording, **kw):
    base = dict(dataset=str(recording), game="Breakout", student="small", steps=30, batch_size=8, eval_every=10,
                test_cap=64, fraction=0.5)
    return TrainConfig(**(base | kw))



def constant_cfg(recording, **kw):
    # no warm-up: its length is a share of --steps, so only a run without one extends to exactly a longer straight run
    return cfg(recording, **({"lr_schedule": "constant", "lr_warmup": 0.0} | kw))




def train_until(c: TrainConfig, run, stop_at: int, device: str = "cpu") -> None:
    """Train ``c`` but stop (as a kill would) after the checkpoint at step ``stop_at``."""
    import distill.training.loop as train_module

    real_save = train_module.save_checkpoint

    def save_then_stop(path, student, optimizer, step, best, generator):
        real_save(path, student, optimizer, step, best, generator)
        if path.name == "latest.pt" and step >= stop_at:
            raise KeyboardInterrupt

    train_module.save_checkpoint = save_then_stop
    try:
        with pytest.raises(KeyboardInterrupt):
            train(c, run, torch.device(device), progress=False)
    finally:
        train_module.save_checkpoint = real_save
