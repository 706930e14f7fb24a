#!/usr/bin/env python
"""One student for several games: KL-only (alpha 0) vs Sobolev (alpha 1) multi-game students over training
fractions and seeds; held-out action error and KL per game and averaged over games.

    python scripts/multigame_grid.py --datasets data/recordings/{breakout,pong,spaceinvaders}-100k-s0.h5 \\
        --out data/multigame --publish docs/multigame-3games

Every run is ``distill-train --dataset A.h5 B.h5 C.h5 --alpha A --fraction F --seed S`` with the other flags at
the values given here (distill-train's defaults unless set). Resumable: finished runs are reused, interrupted ones
continue from their checkpoint. Parallel: start the same command several times (one per core) and each takes runs no
other live invocation has claimed; the last one to finish draws the figure and the table.
``--episodes N`` also plays N games of each game with every student and reports its score over the teacher's.
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
CARDS = Path(__file__).resolve().parents[1] / "teachers" / "cards"


def game_scores(run: Path, episodes: int, envs: int, device) -> dict[str, list[float]]:
    """Each game's sampled-action scores of a run's student over ``episodes`` games (seed 0), kept in the run
    directory so that a rerun plays nothing twice."""
    from distill.evaluation.report import evaluate_student

    path = run / f"scores-sample-{episodes}.json"
    if not path.exists():
        report, _ = evaluate_student(run, episodes=episodes, mode="sample", envs=envs, held_out=False,
                                     with_teacher=False, device=device, echo=lambda line: print(line, file=sys.stderr))
        scores = {game: r["modes"]["sample"]["returns"] for game, r in report["games"].items()}
        path.write_text(json.dumps(scores))
    return json.loads(path.read_text())


def score_table(scores: dict, games: list[str], fractions: list[float], alphas: list[float], seeds: int,
                episodes: int) -> str:
    """Per game: the students' mean score and its ratio to the teacher's (its card's 30 sampled games), with an
    interval that resamples the seeds' students, then their games; for a game where some score is negative (Pong,
    -21 to 21), where a ratio means nothing, the difference in points instead."""
    from distill.evaluation.scores import (difference_interval, difference_interval_by_student, ratio_interval,
                                           ratio_interval_by_student, returns_by_mode)

    def by_student(two_level, pooled):  # one student: only its games to resample
        return two_level if seeds > 1 else lambda groups, reference: pooled(groups[0], reference[0])
    difference, ratio = (by_student(difference_interval_by_student, difference_interval),
                         by_student(ratio_interval_by_student, ratio_interval))

    teacher = {g: returns_by_mode(CARDS / f"{g.lower()}.json")["sample"] for g in games}
    negative = {g for g in games if min(teacher[g]) < 0 or any(min(x[g]) < 0 for x in scores.values())}
    lines = [f"Game scores: sampled actions, {episodes} games per student and game (seed 0), {seeds} students per "
             "cell; the teacher's from its card (teachers/cards/, 30 sampled games). Each cell: the students' mean "
             "score, then student / teacher"
             + (f" ({', '.join(sorted(negative))}: student minus teacher in points, since scores there can be "
                "negative)" if negative else "")
             + " with a 95% interval (students resampled, then their games).", "",
             "| fraction | alpha | " + " | ".join(f"{g} (teacher {np.mean(teacher[g]):.1f})" for g in games) + " |",
             "|---|---|" + "---|" * len(games)]
    for fraction in fractions:
        for alpha in alphas:
            cells = []
            for g in games:
                groups = [scores[(fraction, alpha, s)][g] for s in range(seeds)]
                mean = np.mean([np.mean(x) for x in groups])
                if g in negative:
                    d = difference(groups, [teacher[g]])
                    cells.append(f"{mean:.1f}: {d.difference:+.1f} ({d.low:+.1f} to {d.high:+.1f})")
                else:
                    r = ratio(groups, [teacher[g]])
                    cells.append(f"{mean:.1f}: {100 * r.ratio:.0f}% ({100 * r.low:.0f}-{100 * r.high:.0f}%)")
            lines.append(f"| {fraction:g} | {alpha:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", type=Path, nargs="+", required=True, help="complete recordings, one per game")
    p.add_argument("--out", type=Path, required=True, help="output directory (runs, figure, table)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.5],
                   help="training fractions, trained in the order given")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.0, 1.0])
    p.add_argument("--seeds", type=int, default=3)
    add_arguments(p, exclude=("alpha", "fraction", "seed"))  # the flags, defaults and help of distill-train
    p.add_argument("--episodes", type=int, default=0,
                   help="also play this many games of each game with every student (sampled actions) and report "
                        "its score over the teacher's, from the teacher's card (default 0: no games)")
    p.add_argument("--envs", type=int, default=4, help="games played in parallel with --episodes")
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
               if k not in ("datasets", "out", "fractions", "alphas", "seeds", "device", "publish", "episodes", "envs")}
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
    if args.episodes > 0:
        scores = {(f, a, s): game_scores(run_dir(args.out, f, a, s), args.episodes, args.envs, device)
                  for f, s, a in grid}
        text += "\n\n" + score_table(scores, games, fractions, args.alphas, args.seeds, args.episodes)
        for row in summary:
            row["scores_per_seed"] = {g: [scores[(row["fraction"], row["alpha"], s)][g] for s in range(args.seeds)]
                                      for g in games}
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
            if args.episodes > 0:
                shutil.copy(run / f"scores-sample-{args.episodes}.json",
                            args.publish / "metrics" / f"{run.name}.scores-sample-{args.episodes}.json")
        print(f"published the figure, the table and {len(grid)} runs to {args.publish}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
