#!/usr/bin/env python
"""Benchmark distillation steps: samples/s for alpha 0 and alpha 1 on the same data and device,
their ratio, and the share of step time spent fetching the batch (data wait), for the training rows held in memory
and streamed from the recording by worker processes (the path distill-train takes above --max-memory).

    python scripts/bench_train.py --dataset data/recordings/breakout-....h5 --steps 200
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


from distill.environment.errors import cli_entry
from distill.training.data import TrainingData, recording_episodes, split_by_episodes
from distill.training.streaming import StreamingData
from distill.environment.device import resolve_device
from distill.training.losses import distillation_loss
from distill.training.students import make_student
from distill.training.config import TrainConfig


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(data: TrainingData | StreamingData, alpha: float, steps: int, batch: int, student_name: str,
          device: torch.device, n_actions: int) -> dict:
    torch.manual_seed(0)
    student = make_student(student_name, n_actions).to(device)
    # distill-train's default lr (the lr does not change a step's cost)
    opt = torch.optim.Adam(student.parameters(), lr=TrainConfig.lr)
    gen = torch.Generator().manual_seed(0)
    if isinstance(data, StreamingData):  # workers start on the draws below
        data.start(gen, batch, None, steps + 10, slice(None))
    wait = total = 0.0
    for i in range(steps + 10):
        t0 = time.perf_counter()
        idx = torch.randint(data.n, (batch,), generator=gen).to(device)
        obs, logits, dirs, grads = data.batch(idx)
        sync(device)
        t1 = time.perf_counter()
        loss = distillation_loss(student, obs, logits, alpha, dirs, grads).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)
        t2 = time.perf_counter()
        if i >= 10:  # warm-up excluded
            wait += t1 - t0
            total += t2 - t0
    return {"samples_per_s": steps * batch / total, "step_ms": 1000 * total / steps, "data_wait_share": wait / total}


@cli_entry
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--student", default="paper")
    p.add_argument("--device", default="auto")
    p.add_argument("--paths", nargs="+", default=["memory", "streamed"], choices=["memory", "streamed"],
                   help="how the training rows are read (default both)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    episodes, attrs = recording_episodes(args.dataset)
    n_actions = int(attrs["n_actions"])
    split = split_by_episodes(episodes, args.fraction, 0)
    print(f"device {device}, torch threads {torch.get_num_threads()}, {len(split.train_rows)} training states, "
          f"batch {args.batch_size}, student {args.student}")
    for path in args.paths:
        results = {}
        for alpha in (0.0, 1.0):
            # a fresh reader per run: the streamed one's workers serve one run's draws; like distill-train, a
            # KL-only run reads neither directions nor gradient maps
            data = (TrainingData if path == "memory" else StreamingData)(args.dataset, split.train_rows, device,
                                                                          with_gradients=alpha > 0)
            results[alpha] = bench(data, alpha, args.steps, args.batch_size, args.student, device, n_actions)
            if isinstance(data, StreamingData):
                data.close()
        for alpha, r in results.items():
            print(f"{path:8s} alpha {alpha:g}: {r['samples_per_s']:8.1f} samples/s, {r['step_ms']:7.2f} ms/step, "
                  f"data wait {100 * r['data_wait_share']:.1f}% of step time")
        print(f"{path:8s} alpha-1 step / alpha-0 step: {results[1.0]['step_ms'] / results[0.0]['step_ms']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
