"""``distill-train``: distil a recorded teacher into a student with KL + alpha * Sobolev."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from distill.environment.device import resolve_device
from distill.environment.errors import RESUME_HINT, cli_entry
from distill.recording.schema import find_latest_recording
from distill.training.config import add_arguments, from_arguments
from distill.training import distributed
from distill.training.loop import train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-train",
        description="Train a student on a recording: KL(teacher || student) + alpha * distance between the student's "
                    "and the teacher's projected input gradients grad_s <log pi(s), v>. Splits by whole episodes. "
                    "On several GPUs or processes: torchrun --nproc_per_node N -m distill.cli.train ... (--batch-size "
                    "is the global batch, split over the processes).",
    )
    p.add_argument("--dataset", type=Path, nargs="+", default=None,
                   help="recording (.h5); default: the newest complete recording of --game under data/ "
                        "(by the game and finish time stored in each file). Several recordings, one per game, "
                        "train one multi-game student (shared trunk, one output layer per game; see --game-mix)")
    p.add_argument("--game", default="Breakout", help="game, used to find the recording (default Breakout)")
    add_arguments(p)  # every option of TrainConfig, with its default and help
    p.add_argument("--device", default="auto", help="auto|cpu|cuda (default auto: cuda when there is one)")
    p.add_argument("--out", type=Path, default=None,
                   help="run directory (default data/runs/<game>-<student>-a<alpha>-f<fraction>-s<seed>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--force", action="store_true", help="delete an existing run directory and start over")
    return p


@cli_entry(on_interrupt=RESUME_HINT)
def main(argv: list[str] | None = None) -> int:
    from distill.environment.atari import canonical_game

    args = build_parser().parse_args(argv)
    if args.dataset and len(args.dataset) > 1:
        return _multigame(args)
    game = canonical_game(args.game)
    # the flags first, so that a bad one is named even where no recording has been made yet
    from_arguments(args, dataset="", game=game).validate()
    device = resolve_device(args.device)
    # recorded-direction Sobolev training needs a recording with gradients; KL-only and live-teacher runs take any
    dataset = args.dataset[0] if args.dataset else find_latest_recording(game, needs_gradients=args.alpha > 0 and not args.teacher)
    cfg = from_arguments(args, dataset=str(dataset), game=game)
    student = args.student if args.activation == "relu" else f"{args.student}-{args.activation}"
    out = args.out or Path("data/runs") / f"{game.lower()}-{student}-a{args.alpha:g}-f{args.fraction:g}-s{args.seed}"
    return _run(train, cfg, out, device, args, f"{dataset} into a '{args.student}' student ({args.activation})")


def _run(train_fn, cfg, out: Path, device, args: argparse.Namespace, what: str) -> int:
    """Join the processes torchrun started (if any), train, leave the process group, print the final metrics."""
    ranks, device = distributed.start(device, cfg.batch_size)  # one process, or this rank's share under torchrun
    try:
        if ranks.is_main:
            processes = f" x {ranks.world_size} processes" if ranks.distributed else ""
            print(f"distilling {what} on {device}{processes} -> {out}", file=sys.stderr)
        final = train_fn(cfg, out, device, resume=args.resume, force=args.force, ranks=ranks)
    except BaseException:
        distributed.stop(finished=False)
        raise
    distributed.stop()
    if ranks.is_main:
        print(json.dumps(final, indent=2))
    if ranks.distributed:  # torch's C++ threads can abort the interpreter's exit ("terminate called without an
        sys.stdout.flush()  # active exception") after a finished run: everything is written, so leave at once
        sys.stderr.flush()
        os._exit(0)
    return 0


def _multigame(args: argparse.Namespace) -> int:
    """One student for the games of several recordings."""
    from distill.training.multigame import multigame_config, train_multigame

    flags = from_arguments(args, dataset="", game="", datasets=tuple(str(d) for d in args.dataset))
    flags.validate()  # the flags first, so that a bad one is named before any recording is opened
    cfg = multigame_config(args.dataset, **{k: v for k, v in vars(flags).items()
                                            if k not in ("dataset", "game", "datasets")})
    device = resolve_device(args.device)
    student = args.student if args.activation == "relu" else f"{args.student}-{args.activation}"
    out = args.out or Path("data/runs") / (f"{cfg.game.lower().replace('+', '-')}-{student}-a{args.alpha:g}"
                                           f"-f{args.fraction:g}-s{args.seed}")
    return _run(train_multigame, cfg, out, device, args,
                f"{', '.join(cfg.game.split('+'))} into one '{args.student}' student ({args.activation})")


if __name__ == "__main__":
    raise SystemExit(main())
