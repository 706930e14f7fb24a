#!/usr/bin/env python
"""Held-out action error and KL in the second before each lost life, and on all other held-out states.

The held-out averages weigh every state alike, but the states just before a life is lost decide the game score and
are about 5% of a Breakout recording. With the recording's lives counts (`distill-add-lives`) this splits each run's
held-out states into the ``--window`` states up to each lost life and the rest, and reports the student's action
error and ``KL(pi* || pi)`` in both parts: the same split as ``scripts/diagnostics/life_loss_disagreement.py``, but on the
teacher's recorded games (no play, and the same states for every run), so it also shows what
``distill-train --life-loss-weight`` bought where it aimed.

    python scripts/diagnostics/heldout_by_life_loss.py data/figure4/breakout-t5.75M-cos8k-warmup-ckpt/runs/f0.1-a1-s0 \
        data/figure4/breakout-t5.75M-cos8k-warmup-lifeloss6/runs/f0.1-a1-s0 --json out.json
"""

from __future__ import annotations

import argparse
from pathlib import Path


from distill.environment.device import resolve_device
from distill.environment.errors import cli_entry
from diagnostics_common import finished_runs, life_loss_split, add_window_argument, checked_window, write_reports


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="distill-train run folders, or grid folders holding them")
    add_window_argument(p)
    p.add_argument("--dataset", type=Path, default=None, help="the recording (default: each run's own)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--json", type=Path, default=None, help="also write the reports here")
    args = p.parse_args(argv)
    checked_window(args.window)
    device = resolve_device(args.device)
    reports = []
    print("| run | life-loss weight | before a lost life: states, error / KL | elsewhere: error / KL | all: error / KL |")
    print("|---|---|---|---|---|")
    for run in finished_runs(args.runs, flag="runs"):
        r = life_loss_split(run, args.window, device, args.dataset)
        b, e, a = r["before_lost_life"], r["elsewhere"], r["all"]
        print(f"| {run} | {r['life_loss_weight']:g} | {b['states']}: {b['action_error']:.3f} / {b['kl']:.4f} | "
              f"{e['action_error']:.3f} / {e['kl']:.4f} | {a['action_error']:.3f} / {a['kl']:.4f} |", flush=True)
        reports.append(r)
    return write_reports(args.json, reports)


if __name__ == "__main__":
    raise SystemExit(main())
