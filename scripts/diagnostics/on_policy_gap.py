#!/usr/bin/env python
"""Does a student disagree with its teacher more on the states it reaches itself than on the teacher's states?

Held-out action error and KL are measured on states the *teacher* visited. When the student plays, its own
small mistakes take it to states the teacher rarely visits, where it was never trained (the compounding error of
behaviour cloning). This plays whole games with the student in control (and, as the control experiment, with the
teacher in control), queries both networks on every state reached, and prints the action disagreement and
``KL(pi* || pi)`` on those states beside the game scores. A gap between the two rows that the held-out metrics do
not show is distribution shift, not a worse fit.

    python scripts/diagnostics/on_policy_gap.py data/figure4/breakout-t5.75M-cos8k/runs/f0.1-a1-s0 --episodes 12 --mode sample

Teachers load through the safe path (nothing from the file is run; docs/usage.md, "Bring your own teacher").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


from distill.environment.errors import cli_entry
from distill.training.losses import policy_kl
from distill.evaluation.rollout import play
from distill.training.runs import load_student
from diagnostics_common import add_play_arguments, write_reports


class Disagreement:
    """Runs the policy in control and records, on every state it is asked about, how far apart the two policies are."""

    def __init__(self, in_control: torch.nn.Module, student: torch.nn.Module, teacher: torch.nn.Module):
        self.in_control, self.student, self.teacher = in_control, student, teacher
        self.states = 0
        self.errors = 0.0
        self.kl_sum = 0.0

    @torch.no_grad()
    def __call__(self, obs_scaled: torch.Tensor) -> torch.Tensor:
        student_logits, teacher_logits = self.student(obs_scaled), self.teacher(obs_scaled)
        self.states += len(obs_scaled)
        self.errors += (student_logits.argmax(1) != teacher_logits.argmax(1)).sum().item()
        self.kl_sum += policy_kl(student_logits, teacher_logits, "teacher-student").item() * len(obs_scaled)
        return student_logits if self.in_control is self.student else teacher_logits

    def summary(self) -> dict:
        return {"states": self.states, "action_error": self.errors / max(self.states, 1),
                "kl": self.kl_sum / max(self.states, 1)}


def measure(run: Path, teacher_spec: str | None, episodes: int, mode: str, envs: int, seed: int) -> dict:
    """Play as the student and as the teacher; the disagreement and scores of each."""
    from teachers.load import load_teacher

    student, info = load_student(run)
    config = info["config"]
    teacher = load_teacher(teacher_spec, config["game"])
    student.eval()
    teacher.eval()
    report = {"run": str(run), "game": config["game"], "mode": mode, "episodes": episodes, "seed": seed}
    for name, in_control in (("student plays", student), ("teacher plays", teacher)):
        probe = Disagreement(in_control, student, teacher)
        result = play(probe, config["game"], episodes, mode=mode, seed=seed, envs=envs)
        report[name] = {**probe.summary(), "mean_return": float(np.mean(result.returns)),
                        "std_return": float(np.std(result.returns))}
    held_out = run / "metrics.json"
    if held_out.exists():
        final = json.loads(held_out.read_text())
        report["held_out"] = {"action_error": final["test_action_error"], "kl": final["test_kl"]}
    return report


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="distill-train run directories")
    add_play_arguments(p)
    p.add_argument("--json", type=Path, default=None, help="also write the reports here")
    args = p.parse_args(argv)
    reports = []
    for run in args.runs:
        report = measure(run, args.teacher, args.episodes, args.mode, args.envs, args.seed)
        reports.append(report)
        print(f"\n{run} ({args.mode} actions, {args.episodes} games each)")
        print("| states from | states | action error | KL(pi* || pi) | game score |")
        print("|---|---|---|---|---|")
        for name in ("student plays", "teacher plays"):
            r = report[name]
            print(f"| {name} | {r['states']} | {r['action_error']:.3f} | {r['kl']:.4f} | "
                  f"{r['mean_return']:.1f} ± {r['std_return']:.1f} |")
        if "held_out" in report:
            print(f"| recording's held-out episodes | | {report['held_out']['action_error']:.3f} | "
                  f"{report['held_out']['kl']:.4f} | |")
    return write_reports(args.json, reports)


if __name__ == "__main__":
    raise SystemExit(main())
