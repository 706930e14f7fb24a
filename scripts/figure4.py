#!/usr/bin/env python
"""Reproduce the paper's figure 4 on a recording: KL-only (alpha 0) vs Sobolev (alpha 1) students
over training fractions and seeds; test action error and test KL against training steps.

    python scripts/figure4.py --dataset data/recordings/breakout-....h5 --out docs/figure4-breakout
    python scripts/figure4.py --dataset REC --fractions 0.01 0.05 0.1 0.5 --seeds 3 --steps 8000

Resumable: runs with a metrics.json are reused; interrupted runs continue from their checkpoint.
Parallel: start the same command several times (one per core) and each takes runs no other live
invocation has claimed (``runs/<run>.claim`` holds the owner's pid); the last one to finish draws
the figure and the table.
Writes OUT/figure4.png, OUT/table.md, OUT/results.json; runs live in OUT/runs/.

Across machines: runs and their checkpoints live in the git-ignored data/, which a new machine does not have.
``--publish DOCS`` copies the figure, the table and, per run, the small files that define its result
(DOCS/metrics/<run>.csv, .json, .config.json) to a committed folder; ``--reuse-from DOCS [DOCS ...]`` puts them
back under OUT/runs/ so that a later grid reuses those finished runs instead of training them again; only runs made
with the settings asked for are put back (the KL-only runs of a grid, say, beside Sobolev runs with other Sobolev
settings), and only if the recording at --dataset splits into the training and held-out states the run recorded
(a recording made again with other settings, or resumed after an interruption, holds other episodes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np


from distill.training.data import split_by_episodes
from distill.recording.schema import has_gradients, no_gradients_error
from distill.environment.device import resolve_device
from distill.environment.errors import RERUN_HINT, UserError, cli_entry
from distill.training.config import TrainConfig, add_arguments, from_arguments
from distill.training.runs import config_differences, read_curve, read_run_config
from distill.training.loop import train


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, required=True, help="a complete recording")
    p.add_argument("--out", type=Path, required=True, help="output directory (runs, figure, table)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.05, 0.1, 0.5],
                   help="training fractions, trained in the order given (the figure and table sort them)")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.0, 1.0])
    p.add_argument("--seeds", type=int, default=3)
    add_arguments(p, exclude=("alpha", "fraction", "seed"))  # the flags, defaults and help of distill-train
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--publish", type=Path, metavar="DOCS",
                   help="after drawing, copy the figure, table and every run's curve, final metrics and config here")
    p.add_argument("--reuse-from", type=Path, nargs="+", metavar="DOCS",
                   help="folders written by --publish: their finished runs made with these settings are reused "
                        "instead of trained again (the first folder that holds a run with them wins), if made on a "
                        "recording with the same split")
    return p.parse_args(argv)


def run_dir(out: Path, fraction: float, alpha: float, seed: int) -> Path:
    return out / "runs" / f"f{fraction:g}-a{alpha:g}-s{seed}"


PUBLISHED = {"metrics.csv": ".csv", "metrics.json": ".json", "config.json": ".config.json"}


def publish(out: Path, docs: Path, runs: list[Path]) -> None:
    """Copy what a committed folder needs to show and to reuse the grid (not checkpoints: they are large)."""
    (docs / "metrics").mkdir(parents=True, exist_ok=True)
    for name in ("figure4.png", "table.md", "results.json"):
        shutil.copy(out / name, docs / name)
    for run in runs:
        for source, suffix in PUBLISHED.items():
            shutil.copy(run / source, docs / "metrics" / f"{run.name}{suffix}")


def recording_facts(episode_of_state: np.ndarray, attrs: dict, fraction: float, split_seed: int) -> dict:
    """What a run's config.json records about its recording and split, as this recording gives them.

    The same path can hold another recording (made again, or resumed: a resumed recording restarts its episodes),
    whose held-out episodes differ; a published run is comparable only if these match."""
    split = split_by_episodes(episode_of_state, fraction, split_seed)
    return {"train_states": len(split.train_rows), "test_states": len(split.test_rows),
            "train_episodes": len(split.train_episodes), "test_episodes": len(split.test_episodes),
            "teacher_sha256": str(attrs["teacher_sha256"])}


def restore(docs: Path, run: Path, cfg: TrainConfig, facts: dict | None = None) -> bool:
    """Put a published finished run back under OUT/runs/ unless that run exists there (finished, or being trained
    by another invocation), was made with other settings than ``cfg``, or on a recording whose split differs from
    ``facts`` (then it is trained); True if restored."""
    files = {source: docs / "metrics" / f"{run.name}{suffix}" for source, suffix in PUBLISHED.items()}
    if run.exists() or not all(f.exists() for f in files.values()):
        return False
    diffs = config_differences(files["config.json"], cfg, ignore=("eval_every",))
    if diffs:
        print(f"not restoring {run.name} from {docs}: it was made with other settings ({', '.join(diffs)})",
              file=sys.stderr)
        return False
    stored = json.loads(files["config.json"].read_text())
    other = [f"{k} {stored[k]} there, {v} here" for k, v in (facts or {}).items()
             if k in stored and stored[k] != v]  # configs older than a fact do not record it
    if other:
        print(f"not restoring {run.name} from {docs}: it was made on another recording at {cfg.dataset} "
              f"({'; '.join(other)}); make the recording again with the published command to reuse it",
              file=sys.stderr)
        return False
    run.mkdir(parents=True, exist_ok=True)
    for source, path in files.items():
        shutil.copy(path, run / source)
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return True


def claim(run: Path) -> bool:
    """Take a run for this process unless another live invocation has; a dead owner's claim is taken over."""
    path = run.with_name(run.name + ".claim")
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                owner = int(path.read_text() or "0")
            except (OSError, ValueError):
                owner = 0
            if owner == os.getpid():
                return True
            if owner and _pid_alive(owner):
                return False
            path.unlink(missing_ok=True)  # stale: its owner was killed
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        return True
    return False


def release(run: Path) -> None:
    run.with_name(run.name + ".claim").unlink(missing_ok=True)


def reuse_or_train(label: str, run: Path, cfg, final: dict | None, train_one) -> dict | None:
    """A grid run's final metrics: ``final`` when it is already finished, else ``train_one(cfg, run)`` here unless
    another live invocation has claimed the run (None then: collect it with :func:`finished_elsewhere`)."""
    if final is not None:
        print(f"{label} reuse {run}", file=sys.stderr)
        return final
    if not claim(run):
        print(f"{label} skip {run}: another invocation is training it", file=sys.stderr)
        return None
    print(f"{label} train {run}", file=sys.stderr)
    try:
        return train_one(cfg, run)
    finally:
        release(run)


def finished_elsewhere(pending: list, finished, results: dict) -> bool:
    """Add the runs other invocations claimed to ``results`` if they are done; False (and a word on what to do) if
    one is still being trained, so that the last invocation to finish draws the figure."""
    for key, run, cfg in pending:
        final = finished(run, cfg)
        if final is None:
            print(f"{run} is still being trained by another invocation; the last one to finish draws the figure "
                  "(or run this command again when all are done)", file=sys.stderr)
            return False
        results[key] = {"final": final, "curve": read_curve(run)}
    return True


def falling_description(alpha_until: float) -> str:
    """How the table names the linear schedule's end."""
    if alpha_until == 1.0:
        return " (falling linearly to 0 at the last step)"
    return f" (falling linearly to 0 at {alpha_until:g} of the steps, then KL only)"


def falling_label(alpha_schedule: str, alpha_until: float) -> str:
    """The legend's words for the Sobolev weight's schedule."""
    if alpha_schedule != "linear":
        return ""
    return " falling to 0" + ("" if alpha_until == 1.0 else f" by {alpha_until:.0%} of the steps")


def plot(results: dict, fractions: list[float], alphas: list[float], out: Path, game: str,
         live_teacher: bool = False, alpha_schedule: str = "constant", alpha_until: float = 1.0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    fig, axes = plt.subplots(2, len(fractions), figsize=(4 * len(fractions), 6.5), squeeze=False)
    # KL-only blue and alpha 1 orange as in every figure here; other weights get their own fixed colours, so
    # that a curve and its seed band always match
    others = iter(["tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"])
    colors = {a: "tab:blue" if a == 0 else "tab:orange" if a == 1 else next(others, "tab:gray") for a in alphas}
    for col, fraction in enumerate(fractions):
        for alpha in alphas:
            curves = [results[(fraction, alpha, s)]["curve"] for s in range(results["seeds"])
                      if (fraction, alpha, s) in results]
            if not curves:
                continue
            steps = np.array([r["step"] for r in curves[0]])
            label = "KL only" if alpha == 0 else (
                f"Sobolev (alpha {alpha:g}{falling_label(alpha_schedule, alpha_until)}"
                f"{', live teacher' if live_teacher else ''})")
            color = colors[alpha]
            for row, key in enumerate(("test_action_error", "test_kl")):
                n = min(len(c) for c in curves)
                vals = np.array([[r[key] for r in c[:n]] for c in curves])
                mean, std = vals.mean(0), vals.std(0)
                ax = axes[row][col]
                ax.plot(steps[:n], mean, label=label, color=color)
                ax.fill_between(steps[:n], mean - std, mean + std, alpha=0.25, color=color)
        axes[0][col].set_title(f"{game}: {fraction * 100:g}% of states for training", fontsize="medium")
        axes[0][col].set_ylabel("test action error")
        axes[1][col].set_ylabel("test KL (nats)")
        axes[1][col].set_xlabel("training steps")
        axes[1][col].set_yscale("log")
        # labels as plain numbers: matplotlib's default labels only powers of ten once the range spans more than a
        # decade, which can leave a panel with one or two labels; at 1, 2, 3, 5 and 7 of each decade on a wide panel,
        # at evenly spaced round values on one narrower than a factor of 4
        low, high = axes[1][col].get_ylim()
        axes[1][col].yaxis.set_major_locator(
            MaxNLocator(nbins=5) if high < 4 * low else LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0, 7.0)))
        axes[1][col].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axes[1][col].yaxis.set_minor_formatter(NullFormatter())
    # below the panels rather than inside one: with a single fraction a long label is wider than its axes
    handles, labels = axes[0][0].get_legend_handles_labels()
    columns = len(labels) if len(fractions) > 1 else 1
    rows = -(-len(labels) // max(columns, 1))
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.035 * rows + 0.01, 1, 1))
    fig.savefig(out / "figure4.png", dpi=110)
    plt.close(fig)


@cli_entry(on_interrupt=RERUN_HINT)
def main(argv=None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    from distill.training.data import recording_episodes

    episode_of_state, attrs = recording_episodes(args.dataset)
    game = str(attrs["game"])
    if not has_gradients(attrs) and any(a > 0 for a in args.alphas) and not args.teacher:
        raise UserError(f"{no_gradients_error(args.dataset, attrs)} (here: --alphas 0)")
    for docs in args.reuse_from or []:
        if not (docs / "metrics").is_dir():
            raise UserError(f"--reuse-from {docs} holds no metrics/ folder; pass a folder written by --publish")
    args.out.mkdir(parents=True, exist_ok=True)
    grid = [(f, a, s) for f in args.fractions for s in range(args.seeds) for a in args.alphas]
    results: dict = {"seeds": args.seeds}
    start = time.time()
    def finished(run: Path, cfg: TrainConfig) -> dict | None:
        """The run's final metrics if it is done with these settings; an error if it was made with others."""
        done = run / "metrics.json"
        final = json.loads(done.read_text()) if done.exists() else None
        if final is None or final.get("step") != args.steps:
            return None
        diffs = config_differences(run / "config.json", cfg, ignore=("eval_every",))
        if diffs:
            made_with = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in diffs.items())
            raise UserError(f"{run} was trained with {made_with}; pass the same or use another --out")
        return final

    # the split each fraction gives on this recording, against which published runs are checked before reuse
    facts = ({f: recording_facts(episode_of_state, attrs, f, args.split_seed) for f in args.fractions}
             if args.reuse_from else {})
    pending = []
    for i, (fraction, alpha, seed) in enumerate(grid, 1):
        run = run_dir(args.out, fraction, alpha, seed)
        cfg = from_arguments(args, dataset=str(args.dataset), game=game, alpha=alpha, fraction=fraction, seed=seed)
        source = next((docs for docs in args.reuse_from or [] if restore(docs, run, cfg, facts.get(fraction))), None)
        if source is not None:
            print(f"[{i}/{len(grid)}] restored {run} from {source}", file=sys.stderr)
        final = reuse_or_train(f"[{i}/{len(grid)}]", run, cfg, finished(run, cfg),
                               lambda c, r: train(c, r, device, resume=r.exists()))
        if final is None:
            pending.append(((fraction, alpha, seed), run, cfg))
            continue
        results[(fraction, alpha, seed)] = {"final": final, "curve": read_curve(run)}
    if not finished_elsewhere(pending, finished, results):
        return 0
    fractions = sorted(args.fractions)
    plot(results, fractions, args.alphas, args.out, game, live_teacher=args.teacher is not None,
         alpha_schedule=args.alpha_schedule, alpha_until=args.alpha_until)
    # the devices the runs were trained on (each config.json names its last invocation's), not this invocation's
    devices = [read_run_config(run_dir(args.out, *key) / "config.json").get("device") for key in grid]
    unrecorded = sum(d is None for d in devices)  # runs from before config.json named the device
    trained_on = sorted({d for d in devices if d is not None}) + (
        [f"{unrecorded} run{'s' * (unrecorded > 1)} with no device recorded"] if unrecorded else [])
    lines = [f"Figure 4 reproduction on `{args.dataset}` ({game}): final held-out metrics, mean ± std over "
             f"{args.seeds} seeds; {args.steps} steps, batch {args.batch_size}, lr {args.lr} ({args.lr_schedule}, "
             f"warm-up {args.lr_warmup:g} of the steps), student {args.student}"
             f"{'' if args.activation == 'relu' else f' ({args.activation})'}, distance {args.distance}, "
             f"KL {args.kl}, split seed {args.split_seed}, alpha schedule {args.alpha_schedule}"
             f"{falling_description(args.alpha_until) if args.alpha_schedule == 'linear' else ''}, "
             "Sobolev directions "
             f"{'fresh from the live teacher ' + args.teacher if args.teacher else 'recorded'}, "
             f"trained on {', '.join(trained_on)}.", "",
             "| fraction | alpha | test action error | test KL (nats) | train KL (last interval) | gap: test - train KL |",
             "|---|---|---|---|---|---|"]
    summary = []
    for fraction in fractions:
        for alpha in args.alphas:
            finals = [results[(fraction, alpha, s)]["final"] for s in range(args.seeds)]
            err = np.array([f["test_action_error"] for f in finals])
            kl = np.array([f["test_kl"] for f in finals])
            # the training KL averaged over the last evaluation interval: with the test KL it shows whether a
            # method loses by fitting the training states worse or by generalising worse
            train_kl = np.array([results[(fraction, alpha, s)]["curve"][-1]["train_kl"] for s in range(args.seeds)])
            gap = kl - train_kl
            lines.append(f"| {fraction:g} | {alpha:g} | {err.mean():.4f} ± {err.std():.4f} | "
                         f"{kl.mean():.4f} ± {kl.std():.4f} | {train_kl.mean():.4f} ± {train_kl.std():.4f} | "
                         f"{gap.mean():.4f} ± {gap.std():.4f} |")
            summary.append({"fraction": fraction, "alpha": alpha, "action_error_mean": err.mean(),
                            "action_error_std": err.std(), "kl_mean": kl.mean(), "kl_std": kl.std(),
                            "train_kl_mean": train_kl.mean(), "train_kl_std": train_kl.std(),
                            "gap_mean": gap.mean(), "gap_std": gap.std(),
                            "action_error_per_seed": err.tolist(), "kl_per_seed": kl.tolist()})
    # per seed as well: with three seeds a mean and std hide whether one seed is off (a dead student, say)
    lines += ["", "Per seed (test action error / test KL):", "",
              "| fraction | alpha | " + " | ".join(f"seed {s}" for s in range(args.seeds)) + " |",
              "|---|---|" + "---|" * args.seeds]
    for row in summary:
        cells = [f"{e:.4f} / {k:.4f}" for e, k in zip(row["action_error_per_seed"], row["kl_per_seed"])]
        lines.append(f"| {row['fraction']:g} | {row['alpha']:g} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + f"\n\nWall time of this invocation: {time.time() - start:.0f} s.\n"
    (args.out / "table.md").write_text(text)
    (args.out / "results.json").write_text(json.dumps(summary, indent=2))
    print(text)
    if args.publish is not None:
        publish(args.out, args.publish, [run_dir(args.out, *key) for key in grid])
        print(f"published the figure, the table and {len(grid)} runs to {args.publish}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
