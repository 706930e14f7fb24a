"""Pool game scores over seeds and report student-over-teacher per mode with a bootstrap interval.

    python scripts/score_ratio.py --students docs/figure4-breakout-t5.75M-cos20k-warmup/rollout-f0.1-a1-s*.json \\
        --teacher teachers/cards/breakout.json

``--students`` and ``--teacher`` take ``distill-eval --json`` files or teacher cards; several files on
one side are pooled game by game, per mode (seeds of a method, or extra evaluations of the teacher; a file
adds its games to the modes it has). The first interval treats games as independent draws: how sure we are
about *these* students. With two or more students (told apart by their training run) a second one resamples
the students first, then their games (``ratio_interval_by_student``): how sure we are about students trained
this way, seed-to-seed differences included; when the reference is itself several students (KL-only seeds), they
are resampled the same way. The per-file ratios are printed too.

``--difference`` reports the students' mean score minus the reference's, in game points, with the same two
intervals: for games whose scores can be negative (Pong, -21 to 21), where a ratio means nothing.

    python scripts/score_ratio.py --difference --students docs/game-scores-pong/student8k-f0.01-a1-s*.json \
        --teacher docs/game-scores-pong/student8k-f0.01-a0-s*.json

A multi-game student's ``distill-eval --json`` file holds one report per game: ``--game G`` picks one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


from distill.environment.errors import cli_entry
from distill.evaluation.scores import (difference_interval, difference_interval_by_student, pooled_returns,
                            ratio_interval, ratio_interval_by_student, returns_by_mode, returns_by_policy)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--students", type=Path, nargs="+", required=True,
                   help="distill-eval --json files of the students (pooled)")
    p.add_argument("--teacher", type=Path, nargs="+", required=True,
                   help="teacher card(s) or distill-eval --json file(s) of the teacher (pooled); a student's file "
                        "with the teacher played alongside also works")
    p.add_argument("--game", default=None,
                   help="with distill-eval files of a multi-game student: the game whose scores to compare")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--difference", action="store_true",
                   help="report mean score minus the reference's in points instead of their ratio (for games whose "
                        "scores can be negative, such as Pong)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    game = args.game
    teacher = pooled_returns(args.teacher, policy="teacher", game=game)
    per_student_file = {str(p): returns_by_mode(p, game=game) for p in args.students}
    students = pooled_returns(args.students, game=game)
    student_policies = returns_by_policy(args.students, game=game)  # one entry per student, any number of files
    reference_policies = returns_by_policy(args.teacher, policy="teacher", game=game)
    report: dict = {"students": [str(p) for p in args.students], "teacher": [str(p) for p in args.teacher],
                    "modes": {}}
    pooled_interval, by_student_interval = ((difference_interval, difference_interval_by_student) if args.difference
                                            else (ratio_interval, ratio_interval_by_student))
    for mode in [m for m in students if m in teacher]:
        pooled = pooled_interval(students[mode], teacher[mode], level=args.level)
        student_mean, teacher_mean = float(np.mean(students[mode])), float(np.mean(teacher[mode]))
        means = {p: float(np.mean(found[mode])) for p, found in per_student_file.items() if mode in found}
        if args.difference:
            per_file = {p: m - teacher_mean for p, m in means.items()}
            per_file_text = ", ".join(f"{Path(p).stem} {d:+.1f}" for p, d in per_file.items())
        else:
            per_file = {p: m / teacher_mean for p, m in means.items()}
            per_file_text = ", ".join(f"{Path(p).stem} {100 * r:.0f}%" for p, r in per_file.items())
        report["modes"][mode] = {**pooled.as_dict(), "student_mean": student_mean, "teacher_mean": teacher_mean,
                                 "per_file_difference" if args.difference else "per_file_ratio": per_file}
        print(f"{mode:6s}: students {student_mean:.1f}, teacher {teacher_mean:.1f}: {pooled}")
        groups = [found[mode] for found in student_policies.values() if mode in found]
        reference = [found[mode] for found in reference_policies.values() if mode in found]
        if len(groups) >= 2:
            by_student = by_student_interval(groups, reference, level=args.level)
            report["modes"][mode]["by_student"] = by_student.as_dict()
            both = " (the reference's students too)" if len(reference) > 1 else ""
            print(f"        students resampled, then their games{both}: {by_student}")
        print("        per file: " + per_file_text)
    if not report["modes"]:
        print("no action-selection mode is common to the students and the teacher", file=sys.stderr)
        return 2
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
