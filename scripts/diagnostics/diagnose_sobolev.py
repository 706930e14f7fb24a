#!/usr/bin/env python
"""How well do students match the teacher's input gradients, and how hard does each loss term pull?

For each run directory, on held-out states of its recording, prints: test KL; the relative Sobolev
distance ||g - g*||^2 / ||g*||^2 (1 = a student with zero input gradient); the median ratio of
gradient norms |g| / |g*| and the median cosine between g and g*; and the norm of the parameter
gradient of the KL term and of the Sobolev term (what Adam sees when they are added).

    python scripts/diagnostics/diagnose_sobolev.py data/figure4/breakout/runs/f0.05-a0-s0 data/figure4/breakout/runs/f0.05-a1-s0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


from distill.training.data import TrainingData, recording_episodes, split_by_episodes
from distill.recording.schema import has_gradients
from distill.environment.errors import cli_entry
from distill.training.losses import policy_kl, sobolev_distance
from distill.sobolev import input_gradients
from distill.training.loop import live_projections, recording_teacher
from distill.training.runs import load_student


def held_out_batch(dataset: Path, fraction: float, split_seed: int, n: int,
                   teacher: str | None = None) -> tuple[torch.Tensor, ...]:
    """``n`` evenly spaced held-out states with their logits, directions and teacher projections. A gradient-free
    recording (``--projections 0``) has no stored projections: they are drawn from the recording's teacher
    (``teacher``, else the path stored in the file), one direction per state, with a fixed seed."""
    episodes, attrs = recording_episodes(dataset)
    rows = split_by_episodes(episodes, fraction, split_seed).test_rows
    rows = rows[np.linspace(0, len(rows) - 1, min(n, len(rows))).astype(int)]
    recorded = has_gradients(attrs)
    data = TrainingData(dataset, rows, torch.device("cpu"), with_gradients=recorded)
    obs, logits, dirs, target = data.batch(torch.arange(data.n))
    if not recorded:
        live = recording_teacher(teacher or str(attrs["teacher_path"]), dataset, attrs, torch.device("cpu"))
        dirs, target = live_projections(live, obs, int(attrs["n_actions"]), 1, torch.Generator().manual_seed(0))
    return obs, logits, dirs, target


def diagnose(run: Path, states: int) -> dict:
    student, info = load_student(run, which="latest")
    cfg = info["config"]
    obs, logits, dirs, target = held_out_batch(Path(cfg["dataset"]), cfg["fraction"], cfg["split_seed"], states,
                                               cfg.get("teacher"))
    for p in student.parameters():
        p.requires_grad_(True)
    x = obs.clone().requires_grad_(True)
    out = student(x)
    kl = policy_kl(out, logits, cfg["kl"])
    g = input_gradients(F.log_softmax(out, 1), x, dirs, create_graph=True)
    relative = sobolev_distance(g, target, "relative")
    params = list(student.parameters())
    d_kl = torch.cat([t.flatten() for t in torch.autograd.grad(kl, params, retain_graph=True)])
    d_sob = torch.cat([t.flatten() for t in torch.autograd.grad(relative, params)])
    flat_g, flat_t = g.detach().flatten(2), target.flatten(2)
    directions = "-" if cfg["alpha"] == 0 else ("live teacher" if cfg.get("teacher") else "recorded")
    return {"run": run.name, "alpha": cfg["alpha"], "distance": cfg["distance"], "directions": directions,
            "kl": kl.item(), "relative": relative.item(),
            "norm_ratio": (flat_g.norm(dim=-1) / flat_t.norm(dim=-1)).median().item(),
            "cosine": F.cosine_similarity(flat_g, flat_t, dim=-1).median().item(),
            "param_grad_kl": d_kl.norm().item(), "param_grad_sobolev": d_sob.norm().item()}


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="distill-train run directories")
    p.add_argument("--states", type=int, default=256, help="held-out states to use (default 256)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    print("| run | alpha | distance | directions | test KL | relative Sobolev | median abs(g)/abs(g*) "
          "| median cos(g, g*) | param-grad norm KL | param-grad norm Sobolev |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        r = diagnose(run, args.states)
        print(f"| {r['run']} | {r['alpha']:g} | {r['distance']} | {r['directions']} | {r['kl']:.3f} | "
              f"{r['relative']:.3f} | {r['norm_ratio']:.3f} | {r['cosine']:.3f} | {r['param_grad_kl']:.3g} | "
              f"{r['param_grad_sobolev']:.3g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
