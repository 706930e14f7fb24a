#!/usr/bin/env python
"""Which held-out measure predicts how well a student plays: KL on all states, or KL in the second before a lost life?

Students with level held-out action error and KL can play very differently (docs/figure4.md, "How sure are the game
scores?"). This takes the ``distill-eval --student ... --json`` files of many students (each names its run), pools
each run's games per mode, measures every run's held-out error and ``KL(pi* || pi)`` on all held-out states, on the
``--window`` states up to each lost life and on the rest (``distill.heldout.life_loss_split``; the recording needs
its lives: ``distill-add-lives``), and prints Spearman's rank correlation of each measure with the mean game score
in each mode, across the runs. A measure that predicts play should correlate negatively (lower KL, higher score).

    python scripts/diagnostics/offline_vs_play.py docs/game-scores-breakout-f0.1/student*-60-s1000.json --json out.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats


from distill.environment.device import resolve_device
from distill.environment.errors import UserError, cli_entry
from diagnostics_common import life_loss_split, add_window_argument, checked_window
from distill.evaluation.scores import returns_by_mode

MEASURES = {  # name -> (part of the held-out split, metric)
    "KL, all held-out states": ("all", "kl"),
    "KL, before a lost life": ("before_lost_life", "kl"),
    "KL, elsewhere": ("elsewhere", "kl"),
    "action error, all": ("all", "action_error"),
    "action error, before a lost life": ("before_lost_life", "action_error"),
}


def games_by_run(files: list[Path]) -> dict[str, dict[str, list[float]]]:
    """Each student run's games, pooled over the files that name it, per mode."""
    runs: dict[str, dict[str, list[float]]] = {}
    for path in files:
        try:
            run = json.loads(path.read_text()).get("run")
        except (OSError, json.JSONDecodeError):
            returns_by_mode(path)  # raises its one-line error for a missing or unreadable file
            raise
        if not run:
            raise UserError(f"{path} is not a distill-eval --student JSON file (it names no run)")
        for mode, returns in returns_by_mode(path).items():
            runs.setdefault(run, {}).setdefault(mode, []).extend(returns)
    return runs


def rank_correlations(rows: list[dict], modes: list[str]) -> dict[str, dict[str, dict]]:
    """Spearman's rho (and its p-value) of each measure against each mode's mean score, across ``rows``; None where
    one side is constant."""
    out: dict[str, dict[str, dict]] = {}
    for name, (part, metric) in MEASURES.items():
        values = [r["split"][part][metric] for r in rows]
        for mode in modes:
            scores = [r["mean_score"][mode] for r in rows]
            if np.ptp(values) == 0 or np.ptp(scores) == 0:  # no ranking on one side: no correlation
                out.setdefault(name, {})[mode] = {"rho": None, "p": None}
                continue
            res = stats.spearmanr(values, scores)
            out.setdefault(name, {})[mode] = {"rho": float(res.statistic), "p": float(res.pvalue)}
    return out


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="distill-eval --student JSON files (one run may have several)")
    add_window_argument(p)
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--json", type=Path, default=None, help="also write the per-run figures and correlations here")
    args = p.parse_args(argv)
    checked_window(args.window)
    runs = games_by_run(args.files)
    if len(runs) < 3:
        raise UserError(f"a rank correlation needs at least 3 runs; the files name {len(runs)}")
    modes = sorted(set.intersection(*(set(g) for g in runs.values())))
    device = resolve_device(args.device)
    rows = []
    print(f"| run | games per mode | {' | '.join(f'{m} score' for m in modes)} | KL all | KL before a lost life | "
          f"error before a lost life |")
    print("|---|---|" + "---|" * len(modes) + "---|---|---|")
    for run, games in runs.items():
        if not Path(run).is_dir():
            raise UserError(f"run {run} (named in the JSON files) is not here; pass files of runs on this machine")
        split = life_loss_split(Path(run), args.window, device)
        row = {"run": run, "games": {m: len(games[m]) for m in modes},
               "mean_score": {m: float(np.mean(games[m])) for m in modes}, "split": split}
        rows.append(row)
        scores = " | ".join(f"{row['mean_score'][m]:.1f}" for m in modes)
        print(f"| {run} | {min(row['games'].values())} | {scores} | {split['all']['kl']:.4f} | "
              f"{split['before_lost_life']['kl']:.4f} | {split['before_lost_life']['action_error']:.3f} |", flush=True)
    correlations = rank_correlations(rows, modes)
    print(f"\nSpearman's rho with the mean game score across {len(rows)} runs (p-value):")
    print(f"| measure | {' | '.join(modes)} |")
    print("|---|" + "---|" * len(modes))
    for name, by_mode in correlations.items():
        cells = ("n/a (a constant)" if by_mode[m]["rho"] is None else f"{by_mode[m]['rho']:+.2f} ({by_mode[m]['p']:.3f})"
                 for m in modes)
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"window": args.window, "runs": rows, "spearman": correlations}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
