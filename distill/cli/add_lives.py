"""``distill-add-lives``: store the lives left after every state in a recording made before recordings stored them."""

from __future__ import annotations

import argparse
from pathlib import Path

from distill.environment.errors import UserError, cli_entry
from distill.recording.schema import open_recording
from distill.recording.lives import LIVES_DATASET, before_life_loss, life_losses, replay_lives, write_lives


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-add-lives",
        description="Replay a recording's actions in identically seeded games, check that every frame matches the "
                    "recorded one, and store the lives left after each state as the dataset `lives` (needed by "
                    "distill-train --life-loss-weight). Only recordings made in one go (never resumed) replay.")
    p.add_argument("file", type=Path, help="recording (.h5)")
    p.add_argument("--force", action="store_true", help="replace lives counts the file already stores")
    p.add_argument("--window", type=int, default=16,
                   help="for the summary line: states counted as 'before a lost life' (default 16)")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.window < 1:
        raise UserError(f"--window must be at least 1 step, got {args.window}")
    with open_recording(args.file) as f:
        episode = f["episode"][:int(f["committed"][0])]
        if LIVES_DATASET in f and not args.force:
            print(f"{args.file} already stores lives counts (pass --force to recompute them)")
            return 0
    lives = replay_lives(args.file)  # before writing: a failed replay leaves the file untouched
    write_lives(args.file, lives, force=args.force)
    share = before_life_loss(lives, episode, args.window).mean()
    lost = int(life_losses(lives, episode).sum())
    print(f"{args.file}: stored lives for {len(lives)} states (all frames reproduced); {100 * share:.1f}% of states "
          f"lie in the {args.window} steps up to a lost life ({lost} lives lost)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
