#!/usr/bin/env python
"""How much of each student's first conv layer is still alive?

A first-layer channel whose ReLU never fires passes no gradient and stays dead for the rest of the run. On Pong,
whose frames are nearly all the same background, KL-only students lost most of their first layer early without a
learning-rate warm-up, and some still lose part of it with the default 5% warm-up (docs/figure4.md); a student
with few live channels has less to see with, whatever its loss. For each finished run this prints how many of
the first layer's channels fire somewhere on a fixed-seed sample of the run's own held-out states, beside the
run's final training KL, test action error and test KL, so a weak seed can be told apart from a weak method.

    python scripts/diagnostics/live_channels.py data/figure4/pong-t1.94M-cos8k-ckpt --states 256
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


from distill.environment.errors import cli_entry
from diagnostics_common import finished_runs, sampled_heldout_states, write_reports
from diagnostics_common import live_first_layer_channels
from distill.training.runs import load_student


def live_channel_report(run: Path, states: int) -> dict:
    """Live first-layer channels of the run's latest checkpoint, with its final metrics."""
    student, info = load_student(run, which="latest")
    cfg = info["config"]
    obs, _ = sampled_heldout_states(cfg, states)
    live = live_first_layer_channels(student, obs.float() / 255)
    with open(run / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]
    final = json.loads((run / "metrics.json").read_text())
    return {"run": run.name, "fraction": cfg["fraction"], "alpha": cfg["alpha"], "seed": cfg["seed"],
            "lr_warmup": cfg["lr_warmup"], "states": len(obs), "live_channels": live,
            "channels": student.features[0].out_channels, "train_kl": float(last["train_kl"]),
            "test_action_error": final["test_action_error"], "test_kl": final["test_kl"]}


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="figure-4 grid folders, folders of runs, or run folders")
    p.add_argument("--states", type=int, default=256, help="held-out states, drawn with a fixed seed (default 256)")
    p.add_argument("--json", type=Path, help="also write the reports to this file")
    args = p.parse_args(argv)
    if args.states < 1:
        p.error(f"--states must be at least 1, got {args.states}")
    print("| run | warm-up | live first-layer channels | training KL | test action error | test KL |")
    print("|---|---|---|---|---|---|")
    reports = []
    for run in finished_runs(args.runs, flag="runs"):
        r = live_channel_report(run, args.states)
        reports.append(r)
        print(f"| {r['run']} | {r['lr_warmup']:g} | {r['live_channels']} of {r['channels']} | {r['train_kl']:.4f} | "
              f"{r['test_action_error']:.4f} | {r['test_kl']:.4f} |")
    return write_reports(args.json, reports, indent=1)


if __name__ == "__main__":
    sys.exit(main())
