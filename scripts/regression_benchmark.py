#!/usr/bin/env python
"""Reproduce the paper's regression benchmark (section 4.1, figure 2 right).

Seven 2-D test functions x training sizes {20, 100, 10000} x {regular, sobolev} x seeds.
Writes DIR/results.csv (one row per function, n_train, method, seed), DIR/summary.md and
DIR/figure2.png. Resumable: rows already in results.csv are not recomputed.

    python scripts/regression_benchmark.py --out data/regression --seeds 3
    python scripts/regression_benchmark.py --out /tmp/reg --quick
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm


from distill.environment.errors import RERUN_HINT, UserError, cli_entry
from distill.benchmarks.functions import FUNCTIONS
from distill.benchmarks.regression import ACTIVATIONS, METHODS, RegressionConfig, run_job

FIELDS = ["function", "n_train", "method", "seed", "test_mse", "test_grad_mse", "train_final_loss", "seconds"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data/regression"), help="output directory")
    p.add_argument("--seeds", type=int, default=3, help="seeds per configuration (default 3)")
    p.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 10000], help="training set sizes")
    p.add_argument("--functions", nargs="+", default=list(FUNCTIONS), choices=list(FUNCTIONS))
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per run (default 3000; 300 with --quick)")
    p.add_argument("--lr", type=float, default=RegressionConfig.lr, help="Adam learning rate, cosine-decayed")
    p.add_argument("--gradient-scale", choices=("normalised", "none"), default="normalised",
                   help="divide the gradient term by the training mean of ||grad||^2 (default) or not (none)")
    p.add_argument("--activation", default="relu", choices=list(ACTIVATIONS), help="hidden activation (paper: relu)")
    p.add_argument("--quick", action="store_true", help="1 seed, sizes 20 and 100, 300 steps, 1000 test points")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="runs trained in parallel processes, one torch thread each (default: all cores)")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    return args


def load_done(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as handle:
        return list(csv.DictReader(handle))


def summarise(rows: list[dict], out: Path, cfg: RegressionConfig, seeds: int) -> str:
    """Markdown table of mean test MSE per (function, n_train, method) and the regular/Sobolev ratio."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        groups[(r["function"], int(r["n_train"]), r["method"])].append(float(r["test_mse"]))
    sizes = sorted({k[1] for k in groups})
    funcs = [f for f in FUNCTIONS if any(k[0] == f for k in groups)]
    lines = [f"Regression benchmark: mean test MSE over {seeds} seed(s); {cfg.steps} Adam steps, lr {cfg.lr}, "
             f"{cfg.activation}, 2x{cfg.hidden} hidden units, gradient term scale {cfg.gradient_scale}; ratio = regular / sobolev (>1: Sobolev better).", ""]
    header = "| function | " + " | ".join(f"n={n} regular | n={n} sobolev | n={n} ratio" for n in sizes) + " |"
    lines += [header, "|" + "---|" * (1 + 3 * len(sizes))]
    verdict = {}
    for f in funcs:
        cells = []
        for n in sizes:
            reg, sob = groups.get((f, n, "regular")), groups.get((f, n, "sobolev"))
            if reg and sob:
                rm, sm = float(np.mean(reg)), float(np.mean(sob))
                verdict[(f, n)] = rm / sm
                cells += [f"{rm:.3g} ± {np.std(reg):.2g}", f"{sm:.3g} ± {np.std(sob):.2g}", f"{rm / sm:.3g}"]
            else:
                cells += ["", "", ""]
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    lines.append("")
    for n in sizes:
        ratios = [v for (f, m), v in verdict.items() if m == n]
        if ratios:
            wins = sum(r > 1 for r in ratios)
            geo = math.exp(float(np.mean(np.log(ratios))))
            lines.append(f"- n={n}: Sobolev lower test MSE on {wins}/{len(ratios)} functions; "
                         f"geometric mean of regular/sobolev = {geo:.3g}")
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    return text


def plot(rows: list[dict], out: Path) -> None:
    """Figure like the paper's figure 2 (right): log10 test MSE per function and training size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    funcs = [f for f in FUNCTIONS if any(r["function"] == f for r in rows)]
    sizes = sorted({int(r["n_train"]) for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 4), squeeze=False)
    width = 0.38
    for ax, n in zip(axes[0], sizes):
        for j, (method, color) in enumerate(zip(METHODS, ("tab:blue", "tab:orange"))):
            means, errs = [], []
            for f in funcs:
                vals = [math.log10(max(float(r["test_mse"]), 1e-30)) for r in rows
                        if r["function"] == f and int(r["n_train"]) == n and r["method"] == method]
                means.append(np.mean(vals) if vals else np.nan)
                errs.append(np.std(vals) if vals else 0)
            ax.bar(np.arange(len(funcs)) + (j - 0.5) * width, means, width, yerr=errs, color=color,
                   label=method, capsize=2)
        ax.set_xticks(np.arange(len(funcs)))
        ax.set_xticklabels(funcs, rotation=45, ha="right")
        ax.set_title(f"{n} training points")
        ax.set_ylabel("log10 test MSE")
        ax.axhline(0, color="black", lw=0.5)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(out / "figure2.png", dpi=120)
    plt.close(fig)


@cli_entry(on_interrupt=RERUN_HINT)
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    steps = args.steps or (300 if args.quick else RegressionConfig.steps)
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    cfg = RegressionConfig(steps=steps, lr=args.lr, activation=args.activation, gradient_scale=args.gradient_scale,
                           n_test=1000 if args.quick else RegressionConfig.n_test)
    seeds = 1 if args.quick else args.seeds
    sizes = [s for s in args.sizes if not (args.quick and s > 100)]
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {args.out}: {exc.strerror}; choose a writable --out") from None
    results = args.out / "results.csv"
    rows = load_done(results)
    done = {(r["function"], int(r["n_train"]), r["method"], int(r["seed"])) for r in rows}
    jobs = [(f, n, m, s, cfg) for f in args.functions for n in sizes for s in range(seeds) for m in METHODS
            if (f, n, m, s) not in done]
    new_file = not results.exists()
    start = time.time()
    with results.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        if new_file:
            writer.writeheader()
        if args.jobs > 1 and len(jobs) > 1:
            pool = multiprocessing.get_context("fork").Pool(min(args.jobs, len(jobs)))
            results_iter = pool.imap_unordered(run_job, jobs)
        else:
            pool, results_iter = None, map(run_job, jobs)
        try:
            for row in tqdm(results_iter, total=len(jobs), desc="regression", unit="run", dynamic_ncols=True):
                writer.writerow(row)
                handle.flush()  # each finished run is kept even if the benchmark is interrupted
                rows.append({k: str(v) for k, v in row.items()})
        finally:
            if pool is not None:
                pool.terminate()
    wanted = {(f, n) for f in args.functions for n in sizes}
    rows = [r for r in rows if (r["function"], int(r["n_train"])) in wanted and int(r["seed"]) < seeds]
    print(summarise(rows, args.out, cfg, seeds))
    plot(rows, args.out)
    print(f"{len(jobs)} runs in {time.time() - start:.0f} s; wrote {results}, {args.out / 'summary.md'}, "
          f"{args.out / 'figure2.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
