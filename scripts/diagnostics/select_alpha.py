#!/usr/bin/env python
"""Choose alpha on validation episodes and report it on test episodes that played no part in the choice.

A figure-4 grid judges every run on all held-out episodes; picking the best alpha from that same table flatters it.
This script divides each fraction's held-out episodes in two (``--val-share`` of the states, by whole episodes,
``--val-seed``), re-evaluates every finished run's final checkpoint on both parts, chooses per fraction the Sobolev
weight (alpha > 0; a falling weight, ``--alpha-schedule linear``, is a candidate of its own, and one for each
``--alpha-until``) with the lowest mean
validation KL over seeds, and reports KL-only against that choice on the test part only.

    python scripts/diagnostics/select_alpha.py --dataset data/recordings/breakout-100k-t5.75M-s0.h5 \\
        --runs data/figure4/breakout-t5.75M-cos8k-warmup --out data/select-alpha

``--runs`` takes grid folders (their runs/ are read), folders of run folders, or run folders; runs need config.json, metrics.json and
latest.pt. Per-episode sums are cached in OUT/cache/, so a second call with another --val-seed evaluates nothing.
Writes OUT/select_alpha-vS.md and OUT/select_alpha-vS.json (S: --val-seed, so that divisions sit side by side).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


from distill.training.data import recording_episodes, split_by_episodes
from distill.training.runs import read_run_config
from distill.environment.device import resolve_device
from distill.environment.errors import UserError, cli_entry
from diagnostics_common import cached_episode_sums, divide_heldout, finished_runs


def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


Weight = tuple[float, str]  # alpha and its schedule: alpha 1 held constant and alpha 1 falling to 0 are two candidates
KL_ONLY: Weight = (0.0, "constant")


def run_weight(config: dict) -> Weight:
    """The Sobolev weight a run was trained with (runs made before schedules existed held it constant)."""
    alpha = float(config["alpha"])
    if alpha == 0:
        return KL_ONLY
    schedule = config["alpha_schedule"]  # configs come through read_run_config, older ones completed
    until = float(config["alpha_until"])
    return (alpha, schedule if until == 1.0 else f"{schedule} until {until:g}")


def weight_label(weight: Weight) -> str:
    return f"{weight[0]:g}" + ("" if weight[1] == "constant" else f" {weight[1]}")


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, required=True, help="the recording the runs were trained on")
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="figure-4 grid folders or run folders")
    p.add_argument("--val-share", type=float, default=0.5, help="share of held-out states for validation (0.5)")
    p.add_argument("--val-seed", type=int, default=0, help="seed of the division into validation and test")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--out", type=Path, required=True, help="folder for the table, the JSON and the cache")
    args = p.parse_args(argv)
    if not args.dataset.exists():
        raise UserError(f"--dataset {args.dataset} does not exist; pass the recording the runs were trained on")
    device = resolve_device(args.device)
    episode_of_state, _ = recording_episodes(args.dataset)
    runs = finished_runs(args.runs)

    by_key: dict[tuple[float, Weight, int], Path] = {}
    for run in runs:
        cfg = read_run_config(run / "config.json")["config"]
        if Path(cfg["dataset"]).name != args.dataset.name:
            raise UserError(f"{run} was trained on {cfg['dataset']}, not {args.dataset}; pass that recording")
        key = (float(cfg["fraction"]), run_weight(cfg), int(cfg["seed"]))
        if key in by_key:
            print(f"skip {run}: fraction {key[0]:g}, alpha {weight_label(key[1])}, seed {key[2]} already taken from "
                  f"{by_key[key]}", file=sys.stderr)
            continue
        by_key[key] = run

    rows, summary = [], []
    for fraction in sorted({k[0] for k in by_key}):
        alphas = sorted({k[1] for k in by_key if k[0] == fraction})
        seeds = sorted(set.intersection(*({k[2] for k in by_key if k[:2] == (fraction, a)} for a in alphas)))
        if KL_ONLY not in alphas or len(alphas) < 2 or not seeds:
            print(f"skip fraction {fraction:g}: needs alpha 0 and at least one alpha > 0 on common seeds",
                  file=sys.stderr)
            continue
        any_run = by_key[(fraction, alphas[0], seeds[0])]
        split_seed = read_run_config(any_run / "config.json")["config"]["split_seed"]
        heldout = split_by_episodes(episode_of_state, fraction, split_seed).test_episodes
        states = np.array([(episode_of_state == e).sum() for e in heldout])
        val_eps, test_eps = divide_heldout(heldout, states, args.val_share, args.val_seed)
        per_alpha = {}
        for alpha in alphas:
            val, test = [], []
            for seed in seeds:
                sums = cached_episode_sums(by_key[(fraction, alpha, seed)], args.dataset, episode_of_state,
                                   args.out / "cache", device)
                val.append(sums.metrics(val_eps))
                test.append(sums.metrics(test_eps))
            per_alpha[alpha] = {
                "val_error": mean_std([m["test_action_error"] for m in val]),
                "val_kl": mean_std([m["test_kl"] for m in val]),
                "test_error": mean_std([m["test_action_error"] for m in test]),
                "test_kl": mean_std([m["test_kl"] for m in test]),
                "per_seed_test": [(m["test_action_error"], m["test_kl"]) for m in test],
                "val_states": val[0]["test_states"], "test_states": test[0]["test_states"]}
        chosen = min((a for a in alphas if a[0] > 0), key=lambda a: per_alpha[a]["val_kl"][0])
        kl_only, sob = per_alpha[KL_ONLY], per_alpha[chosen]
        ahead = {m: sob[m][0] < kl_only[m][0] and kl_only[m][0] - sob[m][0] > max(sob[m][1], kl_only[m][1])
                 for m in ("test_error", "test_kl")}
        summary.append({"fraction": fraction, "seeds": seeds, "alphas": [weight_label(a) for a in alphas],
                        "chosen_alpha": weight_label(chosen),
                        "val_episodes": val_eps.tolist(), "test_episodes": test_eps.tolist(),
                        "per_alpha": {weight_label(a): v for a, v in per_alpha.items()},
                        "sobolev_ahead_by_more_than_std": ahead})
        for alpha in alphas:
            r = per_alpha[alpha]
            mark = " (chosen)" if alpha == chosen else ""
            rows.append(f"| {fraction:g} | {weight_label(alpha)}{mark} | {r['val_error'][0]:.4f} / {r['val_kl'][0]:.4f} | "
                        f"{r['test_error'][0]:.4f} ± {r['test_error'][1]:.4f} / {r['test_kl'][0]:.4f} ± "
                        f"{r['test_kl'][1]:.4f} | {len(val_eps)} / {len(test_eps)} |")
    if not summary:
        raise UserError("no fraction has KL-only and Sobolev runs on common seeds under --runs")

    lines = [f"Alpha chosen on validation episodes (--val-share {args.val_share:g}, --val-seed {args.val_seed}); "
             f"recording {args.dataset}; seeds per cell: {', '.join(str(len(s['seeds'])) for s in summary)}.", "",
             "| fraction | alpha | validation error / KL (mean) | test error / KL (mean ± std over seeds) | "
             "episodes val / test |", "|---|---|---|---|---|", *rows, ""]
    for s in summary:
        verdict = ", ".join(f"{m.replace('test_', '')}: {'ahead' if v else 'not ahead'}"
                            for m, v in s["sobolev_ahead_by_more_than_std"].items())
        lines.append(f"- fraction {s['fraction']:g}: chosen alpha {s['chosen_alpha']}; on the test episodes "
                     f"Sobolev vs KL-only by more than the std: {verdict}")
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.out / f"select_alpha-v{args.val_seed}"
    report.with_suffix(".md").write_text(text)
    report.with_suffix(".json").write_text(json.dumps(
        {"dataset": str(args.dataset), "val_share": args.val_share, "val_seed": args.val_seed,
         "runs": {f"{k[0]:g}/{weight_label(k[1])}/{k[2]}": str(v) for k, v in sorted(by_key.items())},
         "fractions": summary},
        indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
