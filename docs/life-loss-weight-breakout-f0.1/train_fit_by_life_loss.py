#!/usr/bin/env python
"""KL on the training states in the 16 steps before a lost life and on the other training states, for the uniform
and the weight-6 fraction-0.1 students (session 14). Usage: train_fit_by_life_loss.py OUT.json"""
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from distill.data import recording_episodes, split_by_episodes  # noqa: E402
from distill.heldout import per_state_metrics  # noqa: E402
from distill.lives import before_life_loss, read_lives  # noqa: E402
from distill.train import load_student  # noqa: E402

dataset = Path("data/recordings/breakout-100k-t5.75M-s0.h5")
episode_of_state, _ = recording_episodes(dataset)
marked = before_life_loss(read_lives(dataset), episode_of_state, 16)
rows = split_by_episodes(episode_of_state, 0.1, 0).train_rows
before = marked[rows]
out = {}
for grid in ("breakout-t5.75M-cos8k-warmup-ckpt", "breakout-t5.75M-cos8k-warmup-lifeloss6"):
    for alpha in ("1", "0"):
        for seed in range(3):
            run = Path(f"data/figure4/{grid}/runs/f0.1-a{alpha}-s{seed}")
            student, _ = load_student(run, device=torch.device("cpu"))
            errors, kls = per_state_metrics(student, dataset, rows, torch.device("cpu"))
            out[str(run)] = {"train_before_kl": float(kls[before].mean()), "train_else_kl": float(kls[~before].mean()),
                             "train_before_err": float(errors[before].mean()),
                             "train_else_err": float(errors[~before].mean())}
            print(run, {k: round(v, 4) for k, v in out[str(run)].items()}, flush=True)
Path(sys.argv[1]).write_text(json.dumps(out, indent=2))
