#!/usr/bin/env python
"""Benchmark recording: states/s against the bare teacher forward+backward bound, bytes per state,
and the compression codecs (ratio, write and read speed) on real frames and gradient maps, each without and with the
Fletcher-32 checksums recordings are written with (the cost of detecting damaged chunks).

    python scripts/bench_record.py --teacher Breakout --states 2000 --envs 8
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch


from distill.environment.errors import cli_entry
from distill.environment import atari
from distill.environment.device import resolve_device
from distill.recording.writer import CHUNK_STATES, RecordConfig, compression, record, teacher_step
from teachers.load import load_teacher

CODECS = ("zstd", "lz4", "blosc-zstd", "gzip", "lzf", "none")


def cpu_seconds(children: bool = False) -> float:
    """CPU time this process has used (all its threads), plus that of its waited-for child processes if asked."""
    t = os.times()
    return t.user + t.system + (t.children_user + t.children_system if children else 0.0)


def bare_throughput(teacher, batch: int, k: int, device, seconds: float = 10.0) -> tuple[float, float]:
    """States/s of teacher forward + K projected backward passes alone, on real observations, and the CPU seconds
    per state they take (all torch threads together)."""
    venv = atari.make_vec_env(teacher.game, n_envs=batch, seed=0)
    obs = venv.reset()
    for _ in range(30):
        obs = venv.step(np.random.randint(0, teacher.n_actions, batch))[0]
    venv.close()
    gen = torch.Generator().manual_seed(0)
    teacher_step(teacher, obs, k, gen, device)  # warm-up
    n, start, cpu = 0, time.time(), cpu_seconds()
    while time.time() - start < seconds:
        teacher_step(teacher, obs, k, gen, device)
        n += batch
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.time() - start), (cpu_seconds() - cpu) / n


def game_cpu_per_state(game: str, n_envs: int, seconds: float = 5.0) -> float:
    """CPU seconds per state of stepping the games alone (random actions), all in this process: what the recording's
    game processes need at the least (it leaves out their pipes to the recording)."""
    venv = atari.make_vec_env(game, n_envs=n_envs, seed=0)
    venv.reset()
    n_actions = venv.action_space.n
    rng = np.random.default_rng(0)
    n, start, cpu = 0, time.time(), cpu_seconds()
    while time.time() - start < seconds:
        venv.step(rng.integers(0, n_actions, n_envs))
        n += n_envs
    used = cpu_seconds() - cpu
    venv.close()
    return used / n


def codec_table(path: Path, n: int = 512, repeats: int = 3) -> list[dict]:
    """Compression ratio and write/read MB/s (best of ``repeats``) of each codec, without and with Fletcher-32
    checksums, on the first ``n`` states of a recording."""
    with h5py.File(path, "r") as f:
        obs, grads = f["obs"][:n], f["proj_grads"][:n]
    rows = []
    for codec in CODECS:
        for name, data in (("obs", obs), ("proj_grads", grads)):
            for checksum in (False, True):
                write = read = float("inf")
                for _ in range(repeats):
                    with tempfile.TemporaryDirectory() as tmp:
                        out = Path(tmp) / "c.h5"
                        start = time.perf_counter()
                        with h5py.File(out, "w") as f:
                            chunk = (max(1, CHUNK_STATES // data.shape[1]) if name == "proj_grads" else CHUNK_STATES,
                                     *data.shape[1:])
                            f.create_dataset("x", data=data, chunks=chunk, fletcher32=checksum, **compression(codec))
                        write = min(write, time.perf_counter() - start)
                        start = time.perf_counter()
                        with h5py.File(out, "r") as f:
                            f["x"][:]
                        read = min(read, time.perf_counter() - start)
                        with h5py.File(out, "r") as f:
                            stored = f["x"].id.get_storage_size()
                mb = data.nbytes / 2**20
                rows.append({"codec": codec, "data": name, "checksum": checksum, "ratio": data.nbytes / stored,
                             "write_MBps": mb / write, "read_MBps": mb / read})
    return rows


@cli_entry
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="Breakout", help="shipped teacher game name or .zip path")
    p.add_argument("--game", default=None)
    p.add_argument("--states", type=int, default=2000, help="states to record for the timing")
    p.add_argument("--envs", type=int, default=8, help="parallel games = teacher batch size")
    p.add_argument("--projections", type=int, default=1)
    p.add_argument("--grad-dtype", default=RecordConfig.grad_dtype, choices=("int8", "float16", "float32"),
                   help="storage of the gradient maps (default: distill-record's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--skip-codecs", action="store_true", help="skip the codec comparison")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    teacher = load_teacher(args.teacher, game=args.game, device=device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, {os.cpu_count()} cores; {teacher.describe()}")
    bound, teacher_cpu = bare_throughput(teacher, args.envs, args.projections, device)
    games_cpu = game_cpu_per_state(teacher.game, args.envs)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.h5"
        cfg = RecordConfig(game=teacher.game, states=args.states, projections=args.projections, envs=args.envs,
                           grad_dtype=args.grad_dtype)
        start, cpu = time.time(), cpu_seconds(children=True)
        record(cfg, teacher, out, device=device, progress=False)  # its game processes are waited for at its end
        elapsed = time.time() - start
        recording_cpu = (cpu_seconds(children=True) - cpu) / args.states
        with h5py.File(out, "r") as f:
            rate = float(f.attrs["last_run_states"]) / float(f.attrs["last_run_seconds"])
        size = out.stat().st_size
        passes = "forward+backward" if args.projections else "forward only"
        print(f"bare teacher {passes} (batch {args.envs}, K={args.projections}): {bound:8.1f} states/s")
        print(f"recording ({args.states} states, {args.grad_dtype} maps, env stepping and HDF5 writes included):  {rate:8.1f} states/s "
              f"(steady state; {args.states / elapsed:.1f} states/s counting environment start-up)")
        print(f"ratio recording / bare bound: {rate / bound:.2f}")
        # the CPU the recording cannot do without: what it runs beyond the teacher and the games is extra
        cores = os.cpu_count() or 1
        ceiling = cores / (teacher_cpu + games_cpu if device.type == "cpu" else games_cpu)
        print(f"CPU per state: teacher {1000 * teacher_cpu:.2f} ms, games alone {1000 * games_cpu:.2f} ms; the "
              f"recording used {1000 * recording_cpu:.2f} ms (start-up included), {recording_cpu * args.states / elapsed:.2f} "
              f"of {cores} cores busy")
        print(f"ceiling with the teacher and the games alone sharing {cores} cores: {ceiling:8.1f} states/s "
              f"(ratio {ceiling / bound:.2f} of the bare bound)")
        print(f"on disk: {size / args.states / 1024:.1f} KiB per state ({size / 2**20:.1f} MiB for {args.states} states)")
        if not args.skip_codecs and args.projections == 0:
            print("\ncodec comparison skipped: a gradient-free recording (K=0) holds no gradient maps")
        elif not args.skip_codecs:
            print("\ncodec       data        checksum   ratio   write MB/s   read MB/s")
            for row in codec_table(out):
                print(f"{row['codec']:11s} {row['data']:10s} {'fletcher32' if row['checksum'] else '-':10s} "
                      f"{row['ratio']:7.2f} {row['write_MBps']:11.1f} {row['read_MBps']:11.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
