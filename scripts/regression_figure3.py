#!/usr/bin/env python
"""The paper's figure 3, and why ReLU holds Sobolev training back in the regression benchmark.

Writes, with the benchmark's own training code and settings (scripts/regression_benchmark.py):

- DIR/figure3.png: Styblinski-Tang, and the regular and Sobolev approximations from 20 points (seed 0), for ReLU
  and for tanh networks (the paper's figure 3 shows ReLU-free smooth approximations of this function).
- DIR/training-loss.png and DIR/training-loss.csv: the two parts of the training loss (value term, and the weighted
  gradient term: trained on by Sobolev, only measured for regular) over the steps, for both methods and both
  activations, at 20 and 100 points (seed 0). A ReLU network's input gradient is piecewise constant in its input, so
  the gradient term can move its slopes but not its kinks; the curves show how far each fit gets.

    python scripts/regression_figure3.py --out docs/regression
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch

from distill.benchmarks.functions import FUNCTIONS
from distill.benchmarks.regression import METHODS, RegressionConfig, fit_regressor, training_set
from distill.environment.errors import RERUN_HINT, UserError, cli_entry

FUNCTION = "styblinski_tang"
ACTIVATIONS = ("relu", "tanh")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data/regression"), help="output directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the training points and the initial weights")
    p.add_argument("--steps", type=int, default=RegressionConfig.steps, help="optimiser steps (the benchmark's)")
    p.add_argument("--curve-every", type=int, default=25, help="steps between points of the training curves")
    p.add_argument("--grid", type=int, default=100, help="points per axis of the surface plots")
    args = p.parse_args(argv)
    for name in ("steps", "curve_every", "grid"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.seed < 0:
        raise UserError(f"--seed must be 0 or more, got {args.seed}")
    return args


def surface(values: torch.Tensor, grid: int) -> np.ndarray:
    return values.reshape(grid, grid).numpy()


def plot_figure3(fits: dict, func, n_train: int, seed: int, grid: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (x0, x1), (y0, y1) = func.domain
    xs, ys = torch.meshgrid(torch.linspace(x0, x1, grid), torch.linspace(y0, y1, grid), indexing="xy")
    points = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)
    truth = surface(func.fn(points), grid)
    train_x = training_set(func, n_train, seed)[0].numpy()
    panels = [("the function", truth)] + [
        (f"{method}, {activation}", surface(fits[activation, method].predict(points)[0], grid))
        for activation in ACTIVATIONS for method in METHODS]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), subplot_kw={"projection": "3d"})
    low, high = truth.min(), truth.max()
    for ax, (title, z) in zip(axes, panels):
        ax.plot_surface(xs.numpy(), ys.numpy(), np.clip(z, low - 0.5 * (high - low), high + 0.5 * (high - low)),
                        cmap="viridis", vmin=low, vmax=high, linewidth=0, antialiased=True)
        if title != "the function":
            mse = float(np.mean((z - truth) ** 2))
            title += f"\ngrid MSE {mse:.3g}"
        ax.scatter(train_x[:, 0], train_x[:, 1], func.fn(torch.from_numpy(train_x)).numpy(), color="red", s=8)
        ax.set_zlim(low - 0.5 * (high - low), high + 0.5 * (high - low))
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=6)
    fig.suptitle(f"Styblinski-Tang from {n_train} points (red), seed {seed}")
    fig.tight_layout()
    fig.savefig(out / "figure3.png", dpi=110)
    plt.close(fig)


def plot_curves(rows: list[dict], sizes: list[int], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(sizes), len(ACTIVATIONS), figsize=(5.5 * len(ACTIVATIONS), 3.6 * len(sizes)),
                             squeeze=False, sharey=True)
    colors = {"regular": "tab:blue", "sobolev": "tab:orange"}
    for i, n in enumerate(sizes):
        for j, activation in enumerate(ACTIVATIONS):
            ax = axes[i][j]
            for method in METHODS:
                sel = [r for r in rows if r["n_train"] == n and r["activation"] == activation and r["method"] == method]
                steps = [r["step"] for r in sel]
                ax.semilogy(steps, [max(r["value_term"], 1e-12) for r in sel], color=colors[method],
                            label=f"{method}: value term")
                ax.semilogy(steps, [max(r["gradient_term"], 1e-12) for r in sel], color=colors[method], ls="--",
                            label=f"{method}: gradient term" + (" (measured)" if method == "regular" else ""))
            ax.set_title(f"{activation}, {n} points")
            ax.set_xlabel("step")
            ax.set_ylabel("training loss (standardised units)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "training-loss.png", dpi=110)
    plt.close(fig)


@cli_entry(on_interrupt=RERUN_HINT)
def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {args.out}: {exc.strerror}; choose a writable --out") from None
    torch.set_num_threads(1)
    func = FUNCTIONS[FUNCTION]
    sizes = [20, 100]
    fits, rows = {}, []
    for activation in ACTIVATIONS:
        cfg = RegressionConfig(steps=args.steps, activation=activation)
        for n in sizes:
            for method in METHODS:
                fitted = fit_regressor(func, n, method, args.seed, cfg, curve_every=args.curve_every)
                rows += [{"activation": activation, "n_train": n, "method": method, "step": step,
                          "value_term": value, "gradient_term": grad} for step, value, grad in fitted.curve]
                if n == 20:
                    fits[activation, method] = fitted
                last = fitted.curve[-1]
                print(f"{activation:5s} n={n:3d} {method:8s} final value term {last[1]:.3g}, gradient term {last[2]:.3g}")
    with (args.out / "training-loss.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_figure3(fits, func, 20, args.seed, args.grid, args.out)
    plot_curves(rows, sizes, args.out)
    print(f"wrote {args.out / 'figure3.png'}, {args.out / 'training-loss.png'}, {args.out / 'training-loss.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
