#!/usr/bin/env python
"""Where do a student's action errors come from: states where the teacher is sure, or near-ties?

Test action error counts every state where ``argmax pi != argmax pi*`` alike. Where the teacher's two most
probable actions are almost equally likely (in Pong about half the states: the ball is far away and the paddle
can wait), the argmax is close to a coin toss for any student, and such states can dominate the metric while
the KL says more about how well the policies agree. For each run this prints the share of held-out states in
each band of the teacher's margin ``p1 - p2`` (its top probability minus the second) and the student's action
error inside each band; with ``--merge`` it also reports the error after pooling actions that do the same thing
(e.g. Pong's NOOP/FIRE, RIGHT/RIGHTFIRE, LEFT/LEFTFIRE: ``--merge 0,1 2,4 3,5``; Breakout's NOOP/FIRE,
``--merge 0,1``, the same once the ball is in play). ``--confusions N`` lists the N most common (teacher's
action, student's action) disagreements with their share of the states, to see which pairs make up the error.

    python scripts/diagnostics/action_error_by_margin.py data/figure4/pong-8k/runs/f0.05-a0-s0 data/figure4/pong-8k/runs/f0.05-a1-s0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F


from distill.environment.errors import UserError, cli_entry
from diagnostics_common import sampled_heldout_logits


def parse_groups(specs: list[str], n_actions: int) -> list[list[int]]:
    """``["0,1", "2,4"]`` -> ``[[0, 1], [2, 4], [3], [5]]``: every action in exactly one group."""
    groups = [[int(a) for a in spec.split(",")] for spec in specs]
    used = [a for g in groups for a in g]
    if len(used) != len(set(used)) or any(not 0 <= a < n_actions for a in used):
        raise UserError(f"--merge groups must name distinct actions in 0..{n_actions - 1}, got {' '.join(specs)}")
    return groups + [[a] for a in range(n_actions) if a not in used]


def confusion_shares(teacher_actions: torch.Tensor, student_actions: torch.Tensor, n_actions: int) -> list[dict]:
    """Every (teacher's argmax, student's argmax) pair that disagrees, with its share of all states, most common
    first: the shares add up to the action error."""
    counts = torch.bincount(teacher_actions * n_actions + student_actions, minlength=n_actions * n_actions)
    pairs = [{"teacher": t, "student": s, "share": float(counts[t * n_actions + s]) / len(teacher_actions)}
             for t in range(n_actions) for s in range(n_actions) if t != s]
    return sorted(pairs, key=lambda pair: -pair["share"])


def margin_report(run: Path, states: int, edges: list[float], merge: list[str]) -> dict:
    cfg, student_logits, teacher_logits = sampled_heldout_logits(run, states)
    teacher, student_p = F.softmax(teacher_logits, 1), F.softmax(student_logits, 1)
    top2 = teacher.topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]
    wrong = (student_p.argmax(1) != teacher.argmax(1)).float()
    bands = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (margin >= lo) & (margin < hi) if hi < edges[-1] else (margin >= lo) & (margin <= hi)
        n = int(inside.sum())
        bands.append({"low": lo, "high": hi, "share": n / len(teacher),
                      "error": float(wrong[inside].mean()) if n else float("nan")})
    report = {"run": run.name, "alpha": cfg["alpha"], "states": len(teacher), "error": float(wrong.mean()), "bands": bands,
              "confusions": confusion_shares(teacher.argmax(1), student_p.argmax(1), teacher.shape[1])}
    if merge:
        groups = parse_groups(merge, teacher.shape[1])
        pooled_t = torch.stack([teacher[:, g].sum(1) for g in groups], 1)
        pooled_s = torch.stack([student_p[:, g].sum(1) for g in groups], 1)
        report["merged_error"] = float((pooled_s.argmax(1) != pooled_t.argmax(1)).float().mean())
    return report


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="distill-train run directories")
    p.add_argument("--states", type=int, default=5000, help="held-out states, drawn with a fixed seed (default 5000)")
    p.add_argument("--edges", type=float, nargs="+", default=[0.0, 0.1, 0.3, 1.0],
                   help="band edges of the teacher's margin p1 - p2 (default 0 0.1 0.3 1)")
    p.add_argument("--merge", nargs="*", default=[], metavar="A,B",
                   help="groups of actions with the same effect, pooled for a second error figure")
    p.add_argument("--confusions", type=int, default=0, metavar="N",
                   help="also list the N most common (teacher's action -> student's action) disagreements")
    args = p.parse_args(argv)
    if args.confusions < 0:
        raise UserError(f"--confusions must be at least 0, got {args.confusions}")
    if len(args.edges) < 2 or any(b <= a for a, b in zip(args.edges, args.edges[1:])):
        raise UserError(f"--edges must rise, got {args.edges}")
    names = [f"[{lo:g}, {hi:g}]" for lo, hi in zip(args.edges[:-1], args.edges[1:])]
    print("| run | alpha | error | " + " | ".join(f"margin {n}: share, error" for n in names)
          + (" | merged error |" if args.merge else " |"))
    print("|---|---|---|" + "---|" * len(names) + ("---|" if args.merge else ""))
    reports = [margin_report(run, args.states, args.edges, args.merge) for run in args.runs]
    for r in reports:
        cells = " | ".join(f"{b['share']:.2f}, {b['error']:.3f}" for b in r["bands"])
        merged = f" | {r['merged_error']:.4f} |" if args.merge else " |"
        print(f"| {r['run']} | {r['alpha']:g} | {r['error']:.4f} | {cells}{merged}")
    if args.confusions:
        print("\nMost common disagreements (teacher's action -> student's action: share of the states)")
        for r in reports:
            pairs = ", ".join(f"{c['teacher']}->{c['student']}: {c['share']:.4f}" for c in r["confusions"][:args.confusions])
            print(f"- {r['run']}: {pairs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
