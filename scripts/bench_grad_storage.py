#!/usr/bin/env python
"""Benchmark ways to store gradient maps: KiB per state on disk, write and read speed, and fidelity (cosine
similarity and relative L2 error per map) against the float32 maps of a recording made with --grad-dtype float32.

    distill-record --game Breakout --seed 0 --states 2048 --grad-dtype float32 --out data/recordings/b32.h5
    python scripts/bench_grad_storage.py --dataset data/recordings/b32.h5

Each option is written with the recorder's chunking (16 states per chunk) and zstd, read back and decoded to
float32. "stored as" options: float16 and int8 are what `distill-record --grad-dtype` offers; the byte-shuffled ones
(HDF5's shuffle filter before zstd) are measured for comparison only.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import torch

from distill.environment.errors import UserError, cli_entry
from distill.recording.schema import decode_gradients, open_recording, quantize_gradients
from distill.recording.writer import CHUNK_STATES


def _float16(g):
    return {"values": g.astype(np.float16)}, lambda d: d["values"].astype(np.float32)


def _bfloat16(g):
    bits = torch.from_numpy(g).to(torch.bfloat16).view(torch.int16).numpy()
    return {"values": bits}, lambda d: torch.from_numpy(d["values"]).view(torch.bfloat16).float().numpy()


def _int8(g):
    q, scales = quantize_gradients(g)
    return ({"values": q, "scales": scales},
            lambda d: decode_gradients(torch.from_numpy(d["values"]), torch.from_numpy(d["scales"])).numpy())


OPTIONS = {  # name: (encoder returning the stored arrays and their decoder, byte shuffle)
    "float32": (lambda g: ({"values": g}, lambda d: d["values"]), False),
    "float16": (_float16, False),
    "float16 + shuffle": (_float16, True),
    "bfloat16 + shuffle": (_bfloat16, True),
    "int8, scale per map (default)": (_int8, False),
}


def measure(exact: np.ndarray, encode, shuffle: bool, path: Path) -> dict:
    n, k = exact.shape[:2]
    t0 = time.perf_counter()
    stored, decode = encode(exact)
    with h5py.File(path, "w") as f:
        for name, values in stored.items():
            chunks = (max(1, CHUNK_STATES // k), *values.shape[1:]) if values.ndim > 2 else (min(n, 1024), k)
            f.create_dataset(name, data=values, chunks=chunks, shuffle=shuffle and values.ndim > 2,
                             **hdf5plugin.Zstd())
    write_s = time.perf_counter() - t0
    size = path.stat().st_size
    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        decoded = decode({name: f[name][:] for name in f})
    read_s = time.perf_counter() - t0
    flat, ref = decoded.reshape(n * k, -1).astype(np.float64), exact.reshape(n * k, -1).astype(np.float64)
    norm = np.linalg.norm(ref, axis=1)
    keep = norm > 0
    cosine = (flat * ref).sum(1)[keep] / (np.linalg.norm(flat, axis=1)[keep] * norm[keep])
    rel = np.linalg.norm(flat - ref, axis=1)[keep] / norm[keep]
    mb = exact.nbytes / 2 / 1e6  # speeds in MB of float16 maps per second, the default's size
    return {"kib_per_state": size / n / 1024, "write_mb_s": mb / write_s, "read_mb_s": mb / read_s,
            "cosine_mean": cosine.mean(), "cosine_min": cosine.min(), "rel_err_mean": rel.mean(),
            "rel_err_max": rel.max()}


@cli_entry
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, required=True, help="a recording made with --grad-dtype float32")
    p.add_argument("--states", type=int, default=2048, help="states read from its start (default 2048)")
    args = p.parse_args(argv)
    if args.states < 1:
        raise UserError(f"--states must be at least 1, got {args.states}")
    with open_recording(args.dataset, require_complete=False) as f:
        if str(f.attrs["grad_dtype"]) != "float32" or "proj_grads" not in f:
            raise UserError(f"{args.dataset} stores its gradients as {f.attrs['grad_dtype']}: the reference must be "
                            "float32; record one with `distill-record --grad-dtype float32 --states 2048`")
        exact = f["proj_grads"][:args.states]
    print(f"{args.dataset}: {len(exact)} states, K={exact.shape[1]}, zstd, {CHUNK_STATES} states per chunk; "
          "speeds in MB of float16 maps per second")
    print("| stored as | KiB/state | write MB/s | read MB/s | cosine mean (min) | relative error mean (max) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (encode, shuffle) in OPTIONS.items():
            r = measure(exact, encode, shuffle, Path(tmp) / "maps.h5")
            print(f"| {name} | {r['kib_per_state']:.1f} | {r['write_mb_s']:.0f} | {r['read_mb_s']:.0f} | "
                  f"{r['cosine_mean']:.6f} ({r['cosine_min']:.6f}) | {r['rel_err_mean']:.2e} ({r['rel_err_max']:.2e}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
