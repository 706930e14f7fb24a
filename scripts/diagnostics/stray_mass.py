#!/usr/bin/env python
"""How often does a student, sampling its actions, pick one its teacher almost never takes?

A student that plays by sampling from its policy is hurt most by the probability it puts on actions the teacher
gives next to none (the "stray" mass): each such draw is a move the teacher would not make. ``KL(pi* || pi)``, the
default distillation loss, is mass-covering: it punishes a student for missing an action the teacher likes, hardly
for spreading mass where the teacher puts none. ``KL(pi || pi*)`` (``distill-train --kl student-teacher``) is
mode-seeking and punishes exactly that spread. For each run this prints, on held-out states: the stray mass (the
student's probability on actions the teacher gives less than ``--below``) beside the teacher's own, the entropies
of both policies, and both KL directions.

    python scripts/diagnostics/stray_mass.py data/figure4/breakout-t5.75M-cos8k-warmup-rkl/runs/f0.1-a1-s0 --below 0.05
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F


from distill.environment.errors import UserError, cli_entry
from diagnostics_common import sampled_heldout_logits, write_reports


def stray_mass_summary(student_log_p: torch.Tensor, teacher_log_p: torch.Tensor, below: float) -> dict[str, float]:
    """Means over states of the stray mass, the entropies and both KL directions (nats), from log-probabilities."""
    student_p, teacher_p = student_log_p.exp(), teacher_log_p.exp()
    stray = teacher_p < below
    return {
        "student_stray_mass": float((student_p * stray).sum(1).mean()),
        "teacher_stray_mass": float((teacher_p * stray).sum(1).mean()),
        "student_entropy": float(-(student_p * student_log_p).sum(1).mean()),
        "teacher_entropy": float(-(teacher_p * teacher_log_p).sum(1).mean()),
        "kl_teacher_student": float((teacher_p * (teacher_log_p - student_log_p)).sum(1).mean()),
        "kl_student_teacher": float((student_p * (student_log_p - teacher_log_p)).sum(1).mean()),
    }


def stray_mass_report(run: Path, states: int, below: float) -> dict:
    """Held-out states of the run's own split (a fixed-seed sample of ``states`` of them), latest checkpoint."""
    cfg, student_logits, teacher_logits = sampled_heldout_logits(run, states)
    student_log_p, teacher_log_p = F.log_softmax(student_logits, 1), F.log_softmax(teacher_logits.float(), 1)
    return {"run": run.name, "alpha": cfg["alpha"], "kl_direction": cfg.get("kl", "teacher-student"),
            "states": len(student_logits), "below": below, **stray_mass_summary(student_log_p, teacher_log_p, below)}


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="distill-train run directories")
    p.add_argument("--states", type=int, default=5000, help="held-out states, drawn with a fixed seed (default 5000)")
    p.add_argument("--below", type=float, default=0.05,
                   help="an action is stray where the teacher gives it less than this probability (default 0.05)")
    p.add_argument("--json", type=Path, help="also write the reports to this file")
    args = p.parse_args(argv)
    if not 0 < args.below < 1:
        raise UserError(f"--below must lie in (0, 1), got {args.below}")
    print(f"| run | alpha | KL loss | stray mass (< {args.below:g}): student / teacher | entropy: student / teacher "
          "| KL(teacher‖student) | KL(student‖teacher) |")
    print("|---|---|---|---|---|---|---|")
    reports = []
    for run in args.runs:
        r = stray_mass_report(run, args.states, args.below)
        reports.append(r)
        print(f"| {r['run']} | {r['alpha']:g} | {r['kl_direction']} | {r['student_stray_mass']:.4f} / "
              f"{r['teacher_stray_mass']:.4f} | {r['student_entropy']:.3f} / {r['teacher_entropy']:.3f} | "
              f"{r['kl_teacher_student']:.4f} | {r['kl_student_teacher']:.4f} |")
    return write_reports(args.json, reports, indent=1)


if __name__ == "__main__":
    raise SystemExit(main())
