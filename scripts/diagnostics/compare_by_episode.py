#!/usr/bin/env python
"""Compare two methods' students held-out episode by episode, seed against seed.

A grid's table averages each run over all held-out states, so one unusual episode can decide a close comparison.
This script pairs run A and run B of the same seed (same split, so the same held-out episodes), and reports on
how many episodes B has the lower KL and the lower action error, both methods' metrics, and the same metrics
without episodes named by ``--exclude-episodes``.

    python scripts/diagnostics/compare_by_episode.py --dataset data/recordings/breakout-100k-t5.75M-s0.h5 \\
        --a data/figure4/GRID/runs/f0.5-a0-s0 data/figure4/GRID/runs/f0.5-a0-s1 \\
        --b data/figure4/GRID/runs/f0.5-a1-s0 data/figure4/GRID/runs/f0.5-a1-s1 --out data/compare

Per-episode sums are cached in OUT/cache/ (shared with scripts/diagnostics/select_alpha.py's format). Writes OUT/compare.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


from distill.training.data import recording_episodes
from distill.training.runs import read_run_config
from distill.environment.device import resolve_device
from distill.environment.errors import UserError, cli_entry
from diagnostics_common import cached_episode_sums, finished_runs


def _config(run: Path) -> dict:
    return read_run_config(run / "config.json")["config"]


def compare_pair(a, b, exclude: list[int]) -> dict:
    """Episode-by-episode comparison of two runs' per-episode sums over the same held-out episodes."""
    if not np.array_equal(a.episodes, b.episodes):
        raise UserError("the two runs hold out different episodes (another fraction or --split-seed); "
                        "pair runs of the same split")
    kl_a, kl_b = a.kl / a.states, b.kl / b.states
    err_a, err_b = a.errors / a.states, b.errors / b.states
    kept = a.episodes[~np.isin(a.episodes, exclude)]
    return {"episodes": int(len(a.episodes)),
            "b_lower_kl": int((kl_b < kl_a).sum()), "b_lower_error": int((err_b < err_a).sum()),
            "b_higher_error": int((err_b > err_a).sum()),
            "a": a.metrics(a.episodes), "b": b.metrics(b.episodes),
            "excluded": [int(e) for e in exclude if e in a.episodes],
            "a_without_excluded": a.metrics(kept), "b_without_excluded": b.metrics(kept)}


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, required=True, help="the recording the runs were trained on")
    p.add_argument("--a", type=Path, nargs="+", required=True, help="run folders of method A (one per seed)")
    p.add_argument("--b", type=Path, nargs="+", required=True, help="run folders of method B, paired by seed with A")
    p.add_argument("--exclude-episodes", type=int, nargs="*", default=[],
                   help="episode ids also left out in a second reading (e.g. one unusual game)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--out", type=Path, required=True, help="folder for compare.json and the cache")
    args = p.parse_args(argv)
    if not args.dataset.exists():
        raise UserError(f"--dataset {args.dataset} does not exist; pass the recording the runs were trained on")
    runs_a, runs_b = finished_runs(args.a, "--a"), finished_runs(args.b, "--b")
    configs = {run: _config(run) for run in (*runs_a, *runs_b)}
    by_seed_a = {configs[r]["seed"]: r for r in runs_a}
    by_seed_b = {configs[r]["seed"]: r for r in runs_b}
    seeds = sorted(set(by_seed_a) & set(by_seed_b))
    if not seeds:
        raise UserError("no seed has a finished run in both --a and --b; pair runs of the same seed")
    for run, cfg in configs.items():
        if Path(cfg["dataset"]).name != args.dataset.name:
            raise UserError(f"{run} was trained on {cfg['dataset']}, not {args.dataset}; pass that recording")
    device = resolve_device(args.device)
    episode_of_state, _ = recording_episodes(args.dataset)
    report = {"dataset": str(args.dataset), "pairs": []}
    for seed in seeds:
        a, b = (cached_episode_sums(r, args.dataset, episode_of_state, args.out / "cache", device)
                for r in (by_seed_a[seed], by_seed_b[seed]))
        pair = {"seed": seed, "run_a": str(by_seed_a[seed]), "run_b": str(by_seed_b[seed]),
                **compare_pair(a, b, args.exclude_episodes)}
        report["pairs"].append(pair)
        print(f"seed {seed}: A {pair['a']['test_action_error']:.4f} / {pair['a']['test_kl']:.4f}, "
              f"B {pair['b']['test_action_error']:.4f} / {pair['b']['test_kl']:.4f} (error / KL); B lower KL on "
              f"{pair['b_lower_kl']} of {pair['episodes']} episodes, lower error on {pair['b_lower_error']} "
              f"(higher on {pair['b_higher_error']})")
        if pair["excluded"]:
            print(f"        without episodes {pair['excluded']}: A {pair['a_without_excluded']['test_kl']:.4f}, "
                  f"B {pair['b_without_excluded']['test_kl']:.4f} KL; A "
                  f"{pair['a_without_excluded']['test_action_error']:.4f}, B "
                  f"{pair['b_without_excluded']['test_action_error']:.4f} error")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out / 'compare.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
