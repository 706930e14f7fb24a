#!/usr/bin/env python
"""One student for several games: KL-only (alpha 0) vs Sobolev (alpha 1) multi-game students over training
fractions and seeds; held-out action error and KL per game and averaged over games.

    python scripts/multigame_grid.py --datasets data/recordings/{breakout,pong,spaceinvaders}-100k-s0.h5 \\
        --out data/multigame --publish docs/multigame-3games

Every run is ``distill-train --dataset A.h5 B.h5 C.h5 --alpha A --fraction F --seed S`` with the other flags at
the values given here (distill-train's defaults unless set). Resumable: finished runs are reused, interrupted ones
continue from their checkpoint. Parallel: start the same command several times (one per core) and each takes runs no
other live invocation has claimed; the last one to finish draws the figure and the table.
Writes OUT/multigame.png, OUT/table.md and OUT/results.json; runs live in OUT/runs/. ``--publish DOCS`` copies them
and each run's metrics.csv, metrics.json and config.json to a committed folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from figure4 import finished_elsewhere, reuse_or_train  # noqa: E402  (claim files: several invocations share a grid)

from distill.environment.device import resolve_device  # noqa: E402
from distill.environment.errors import RERUN_HINT, UserError, cli_entry  # noqa: E402
from distill.training.config import add_arguments  # noqa: E402
from distill.training.multigame import multigame_config, train_multigame  # noqa: E402
from distill.training.runs import config_differences, read_curve, read_run_config  # noqa: E402

PUBLISHED = {"metrics.csv": ".csv", "metrics.json": ".json", "config.json": ".config.json"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", type=Path, nargs="+", required=True, help="complete recordings, one per game")
    p.add_argument("--out", type=Path, required=True, help="output directory (runs, figure, table)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.5],
                   help="training fractions, trained in the order given")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.0, 1.0])
    p.add_argument("--seeds", type=int, default=3)
    add_arguments(p, exclude=("alpha", "fraction", "seed"))  # the flags, defaults and help of distill-train
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--publish", type=Path, metavar="DOCS",
                   help="after drawing, copy the figure, table and every run's curve, final metrics and config here")
    return p.parse_args(argv)


def run_dir(out: Path, fraction: float, alpha: float, seed: int) -> Path:
    return out / "runs" / f"f{fraction:g}-a{alpha:g}-s{seed}"


def finished(run: Path, cfg) -> dict | None:
    """The run's final metrics if it is done with these settings; an error if it was made with others."""
    done = run / "metrics.json"
    final = json.loads(done.read_text()) if done.exists() else None
    if final is None or final.get("step") != cfg.steps:
        return None
    diffs = config_differences(run / "config.json", cfg, ignore=("eval_every",))
    if diffs:
        raise UserError(f"{run} was trained with other settings ({', '.join(diffs)}); pass the same or another --out")
    return final


def plot(results: dict, games: list[str], fractions: list[float], alphas: list[float], seeds: int,
         out: Path) -> None:
    """Rows: each fraction's test action error and test KL; columns: each game, then the mean over games."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [*games, "mean over games"]
    fig, axes = plt.subplots(2 * len(fractions), len(columns), figsize=(3.6 * len(columns), 2.9 * 2 * len(fractions)),
                             squeeze=False)
    colors = {0.0: "tab:blue", 1.0: "tab:orange"}
    for f_i, fraction in enumerate(fractions):
        for alpha in alphas:
            curves = [results[(fraction, alpha, s)]["curve"] for s in range(seeds)]
            n = min(len(c) for c in curves)
            steps = np.array([r["step"] for r in curves[0][:n]])
            label = "KL only" if alpha == 0 else f"Sobolev (alpha {alpha:g})"
            for c_i, column in enumerate(columns):
                for m_i, metric in enumerate(("test_action_error", "test_kl")):
                    key = metric if column == "mean over games" else f"{column}_{metric}"
                    vals = np.array([[r[key] for r in c[:n]] for c in curves])
                    mean, std = vals.mean(0), vals.std(0)
                    ax = axes[2 * f_i + m_i][c_i]
                    color = colors.get(alpha, "tab:green")
                    ax.plot(steps, mean, color=color, label=label)
                    ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.25)
                    if m_i == 1:
                        ax.set_yscale("log")
                    if c_i == 0:
                        ax.set_ylabel(f"{fraction * 100:g}%: test {'action error' if m_i == 0 else 'KL'}")
                    if f_i == 0 and m_i == 0:
                        ax.set_title(column, fontsize="medium")
    for ax in axes[-1]:
        ax.set_xlabel("training steps")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out / "multigame.png", dpi=100)
    plt.close(fig)


def table(results: dict, games: list[str], fractions: list[float], alphas: list[float], seeds: int,
          header: str) -> tuple[str, list[dict]]:
    """Final held-out metrics (all held-out states), mean ± std over seeds, per game and averaged over games."""
    columns = [*games, "mean over games"]
    lines = [header, "", "| fraction | alpha | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    summary = []
    for fraction in fractions:
        for alpha in alphas:
            finals = [results[(fraction, alpha, s)]["final"] for s in range(seeds)]
            cells, row = [], {"fraction": fraction, "alpha": alpha}
            for column in columns:
                pick = (lambda f, k: f[k]) if column == "mean over games" else (lambda f, k: f["games"][column][k])
                err = np.array([pick(f, "test_action_error") for f in finals])
                kl = np.array([pick(f, "test_kl") for f in finals])
                cells.append(f"{err.mean():.4f} ± {err.std():.4f} / {kl.mean():.4f} ± {kl.std():.4f}")
                row[column] = {"action_error_per_seed": err.tolist(), "kl_per_seed": kl.tolist()}
            lines.append(f"| {fraction:g} | {alpha:g} | " + " | ".join(cells) + " |")
            summary.append(row)
    lines += ["", "Each cell: test action error / test KL (nats), mean ± std over seeds."]
    return "\n".join(lines), summary


@cli_entry(on_interrupt=RERUN_HINT)
def main(argv=None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    options = {k: v for k, v in vars(args).items()
               if k not in ("datasets", "out", "fractions", "alphas", "seeds", "device", "publish")}
    args.out.mkdir(parents=True, exist_ok=True)
    grid = [(f, s, a) for f in args.fractions for s in range(args.seeds) for a in args.alphas]
    results: dict = {}
    pending = []
    start = time.time()
    for i, (fraction, seed, alpha) in enumerate(grid, 1):
        run = run_dir(args.out, fraction, alpha, seed)
        cfg = multigame_config(args.datasets, alpha=alpha, fraction=fraction, seed=seed, **options)
        final = reuse_or_train(f"[{i}/{len(grid)}]", run, cfg, finished(run, cfg),
                               lambda c, r: train_multigame(c, r, device, resume=r.exists()))
        if final is None:
            pending.append(((fraction, alpha, seed), run, cfg))
            continue
        results[(fraction, alpha, seed)] = {"final": final, "curve": read_curve(run)}
    if not finished_elsewhere(pending, finished, results):
        return 0

    fraction, seed, alpha = grid[0]
    first = read_run_config(run_dir(args.out, fraction, alpha, seed) / "config.json")
    games = [g["game"] for g in first["games"]]
    fractions = sorted(args.fractions)
    plot(results, games, fractions, args.alphas, args.seeds, args.out)
    devices = sorted({read_run_config(run_dir(args.out, f, a, s) / "config.json").get("device")
                      for f, s, a in grid})
    teachers = first["teachers_parameters"]
    header = (f"One '{args.student}' student for {', '.join(games)} ({first['student_parameters']:,} parameters"
              f"{f' against {teachers:,} in the {len(games)} teachers together' if teachers else ''}), trained on "
              f"{', '.join(f'`{d}`' for d in args.datasets)}: final held-out metrics over {args.seeds} seeds; "
              f"{args.steps} steps, batch {args.batch_size} (game mix {args.game_mix}), lr {args.lr} "
              f"({args.lr_schedule}, warm-up {args.lr_warmup:g}), distance {args.distance}, split seed "
              f"{args.split_seed}, trained on {', '.join(str(d) for d in devices)}.")
    text, summary = table(results, games, fractions, args.alphas, args.seeds, header)
    text += f"\n\nWall time of this invocation: {time.time() - start:.0f} s.\n"
    (args.out / "table.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps(summary, indent=2))
    print(text)
    if args.publish is not None:
        (args.publish / "metrics").mkdir(parents=True, exist_ok=True)
        for name in ("multigame.png", "table.md", "results.json"):
            shutil.copy(args.out / name, args.publish / name)
        for fraction, seed, alpha in grid:
            run = run_dir(args.out, fraction, alpha, seed)
            for source, suffix in PUBLISHED.items():
                shutil.copy(run / source, args.publish / "metrics" / f"{run.name}{suffix}")
        print(f"published the figure, the table and {len(grid)} runs to {args.publish}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
