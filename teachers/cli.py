"""``distill-teacher``: train an A3C-style Atari teacher with stable-baselines3."""

from __future__ import annotations

import argparse
from pathlib import Path

from distill.environment.errors import RESUME_HINT, UserError, cli_entry
from teachers.train import ALGOS, VEC_ENVS, TeacherRunConfig, train_teacher


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-teacher",
        description="Train an A3C-style actor-critic teacher (stable-baselines3 A2C with rl-baselines3-zoo "
                    "Atari settings) and save it as a stable-baselines3 .zip. Resumable.",
    )
    p.add_argument("--game", required=True, help="Atari game: Breakout, breakout or BreakoutNoFrameskip-v4")
    p.add_argument("--steps", type=int, default=10_000_000, help="total environment steps to train to (default 10M)")
    p.add_argument("--out", type=Path, default=None,
                   help="output .zip (default data/teachers/<game>_<algo>_s<seed>.zip); checkpoints, monitor "
                        "files and TensorBoard logs go to <out stem>_run/ beside it")
    p.add_argument("--algo", choices=ALGOS, default="a2c", help="a2c (A3C-style, default) or ppo")
    p.add_argument("--envs", type=int, default=16, help="parallel environments (default 16, as the zoo)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda (default auto: CUDA when present)")
    p.add_argument("--checkpoint-every", type=int, default=250_000, help="steps between checkpoints (default 250K)")
    p.add_argument("--vec-env", choices=VEC_ENVS, default="dummy",
                   help="dummy: all games in this process (default, best on 2 cores); subproc: one process per "
                        "game (faster on many cores)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop cleanly after this many minutes of wall time and save; --resume continues later")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out and its run directory")
    return p


@cli_entry(on_interrupt=RESUME_HINT)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.checkpoint_every < 1:
        raise UserError("--checkpoint-every must be at least 1 step")
    cfg = TeacherRunConfig(game=args.game, algo=args.algo, steps=args.steps, seed=args.seed, envs=args.envs,
                           device=args.device, checkpoint_every=args.checkpoint_every,
                           vec_env=args.vec_env)
    if args.out is None:
        from distill.environment.atari import canonical_game

        args.out = Path("data/teachers") / f"{canonical_game(args.game).lower()}_{args.algo}_s{args.seed}.zip"
    max_seconds = None if args.max_minutes is None else args.max_minutes * 60
    out = train_teacher(cfg, args.out, resume=args.resume, force=args.force, max_seconds=max_seconds)
    print(f"saved teacher to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
