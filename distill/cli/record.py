"""``distill-record``: follow a teacher and write states, logits and projected input gradients to HDF5."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill.environment.device import exact_float32, resolve_device
from distill.environment.errors import RESUME_HINT, UserError, cli_entry
from distill.recording.writer import BEHAVIOURS, GRAD_DTYPES, RecordConfig, default_recording_path, record
from teachers.sb3 import TRUST_HELP


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="distill-record",
        description="Play the game following a teacher and record, for every state, the observation, the teacher's "
                    "logits, the action taken, the episode, and K random unit vectors v with grad_s <log pi*(s), v> "
                    "(wrt obs/255). Defaults reproduce the paper: 100,000 states, K=1, sampling from the teacher.",
    )
    p.add_argument("--game", default="Breakout", help="Atari game (default Breakout)")
    p.add_argument("--teacher", default=None,
                   help="teacher: a game name (the shipped teacher; default: --game's), a stable-baselines3 .zip, "
                        "an rl-baselines3-zoo run or hub folder, a CleanRL checkpoint, a TorchScript file "
                        "(--trust-checkpoint); nothing from the file is run by default")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.add_argument("--states", type=int, default=100_000, help="states to record (default 100000)")
    p.add_argument("--projections", type=int, default=1,
                   help="random projections K per state (default 1); 0 records no gradients, ~220x smaller and "
                        "faster to make: for --alpha 0, or for distill-train --teacher (fresh directions)")
    p.add_argument("--grad-dtype", choices=tuple(GRAD_DTYPES), default=RecordConfig.grad_dtype,
                   help="storage of the gradient maps (default int8: values with a scale per map, ~10 KiB per state, "
                        "~4%% relative error, students within one std of float16's; float16: ~49 KiB, ~2e-4; "
                        "float32: ~95 KiB)")
    p.add_argument("--out", type=Path, default=None,
                   help="output .h5 (default data/recordings/<game>-<timestamp>.h5, where distill-train finds it)")
    p.add_argument("--envs", type=int, default=8, help="games played in parallel, batched through the teacher")
    p.add_argument("--seed", type=int, default=0, help="seed of the games, the actions and the directions v")
    p.add_argument("--behaviour", choices=BEHAVIOURS, default="sample",
                   help="how the teacher acts while recording: sample from it (default) or greedy argmax")
    p.add_argument("--epsilon", type=float, default=0.0, help="probability of a uniformly random action (default 0)")
    p.add_argument("--codec", default="zstd", help="HDF5 compression: zstd (default), lz4, blosc-zstd, gzip, lzf, none")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--resume", action="store_true", help="continue an interrupted recording in --out")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--temperature", type=float, default=0.01, help="Q / temperature for DQN-family teachers")
    return p


@cli_entry(on_interrupt=RESUME_HINT)
def main(argv: list[str] | None = None) -> int:
    from distill.environment import atari
    from teachers.load import load_teacher

    args = build_parser().parse_args(argv)
    game = atari.canonical_game(args.game)
    cfg = RecordConfig(game=game, states=args.states, projections=args.projections, grad_dtype=args.grad_dtype,
                       envs=args.envs, seed=args.seed, behaviour=args.behaviour, epsilon=args.epsilon,
                       codec=args.codec)
    cfg.validate()
    if args.resume and args.out is None:
        raise UserError("--resume needs --out FILE (the recording to continue)")
    device = resolve_device(args.device)
    exact_float32()  # a GPU recording reproduces a CPU one with the same seed
    teacher = load_teacher(args.teacher if args.teacher is not None else game, game=game,
                           temperature=args.temperature, device=device, trust_checkpoint=args.trust_checkpoint)
    out = args.out or default_recording_path(game)
    print(f"recording {cfg.states} states of {game} with {teacher.describe()} -> {out}", file=sys.stderr)
    record(cfg, teacher, out, resume=args.resume, force=args.force, device=device)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
