#!/usr/bin/env python
"""Benchmark distillation steps: samples/s for alpha 0 and alpha 1 on the same data and device,
their ratio, and the share of step time spent fetching the batch (data wait), for the training rows held in memory
and streamed from the recording by worker processes (the path distill-train takes above --max-memory).

    python scripts/bench_train.py --dataset data/recordings/breakout-....h5 --steps 200
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap


from distill.environment.errors import cli_entry
from distill.training.data import TrainingData, recording_episodes, split_by_episodes
from distill.training.streaming import StreamingData
from distill.environment.device import resolve_device
from distill.sobolev import input_gradients
from distill.training.losses import distillation_loss, policy_kl, sobolev_distance
from distill.training.students import make_student
from distill.training.config import TrainConfig


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(data: TrainingData | StreamingData, alpha: float, steps: int, batch: int, student_name: str,
          device: torch.device, n_actions: int, step=None, prepare=None, params_only: bool = True) -> dict:
    """Time ``steps`` optimiser steps (after 10 of warm-up); ``step`` computes an alpha-1 loss another way, on the
    student that ``prepare`` returns. ``params_only=False`` calls a bare ``backward()``, which also computes the
    loss's gradient in the observations (what distill-train did before it passed ``inputs=``)."""
    torch.manual_seed(0)
    student = make_student(student_name, n_actions).to(device)
    model = student if prepare is None else prepare(student)
    # distill-train's default lr (the lr does not change a step's cost)
    opt = torch.optim.Adam(student.parameters(), lr=TrainConfig.lr)
    gen = torch.Generator().manual_seed(0)
    if isinstance(data, StreamingData):  # workers start on the draws below
        data.start(gen, batch, None, steps + 10, slice(None))
    wait = total = 0.0
    step_seconds = []
    for i in range(steps + 10):
        t0 = time.perf_counter()
        idx = torch.randint(data.n, (batch,), generator=gen).to(device)
        obs, logits, dirs, grads = data.batch(idx)
        sync(device)
        t1 = time.perf_counter()
        loss = (distillation_loss(model, obs, logits, alpha, dirs, grads).total if step is None
                else step(model, obs, logits, dirs, grads)[0])
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=list(student.parameters()) if params_only else None)
        opt.step()
        sync(device)
        t2 = time.perf_counter()
        if i >= 10:  # warm-up excluded
            wait += t1 - t0
            total += t2 - t0
            step_seconds.append(t2 - t0)
    return {"samples_per_s": steps * batch / total, "step_ms": 1000 * total / steps,
            "median_step_ms": 1000 * statistics.median(step_seconds), "data_wait_share": wait / total}


# ---------------------------------------------------------------------------------------------
# ways to compute one Sobolev step (alpha 1, cosine distance): each returns (what .backward() is called on, the loss)
# ---------------------------------------------------------------------------------------------
def double_backward(student, obs, logits, dirs, grads):
    """Today's step: the student's input gradient with create_graph=True, then one backward through both."""
    out = distillation_loss(student, obs, logits, 1.0, dirs, grads)
    return out.total, out.total


def forward_over_reverse(student, obs, logits, dirs, grads):
    """The same parameter gradients without a graph of the input gradient: with R = d(distance)/dg at the student's
    g, d(loss)/d(theta) = d(KL)/d(theta) + d<g(theta), R>/d(theta), and <g, R> is the forward-mode derivative of
    <log pi(s), v> along R, whose reverse pass gives the second term."""
    x = obs.detach().requires_grad_(True)
    log_probs = F.log_softmax(student(x), 1)
    (g,) = torch.autograd.grad((log_probs * dirs[:, 0]).sum(), x)  # K = 1: values only, no graph
    g = g.unsqueeze(1).requires_grad_(True)
    sob = sobolev_distance(g, grads, "cosine")
    (r,) = torch.autograd.grad(sob, g)
    with fwAD.dual_level():
        out = student(fwAD.make_dual(obs, r[:, 0]))
        shifted = out - out.max(1, keepdim=True).values.detach()  # log_softmax, in ops whose forward AD is
        log_probs = shifted - shifted.exp().sum(1, keepdim=True).log()  # reverse-differentiable
        tangent = fwAD.unpack_dual((log_probs * dirs[:, 0]).sum()).tangent
        student_logits = fwAD.unpack_dual(out).primal
    kl = policy_kl(student_logits, logits)
    return kl + tangent, kl.detach() + sob.detach()


def func_vmap(student, obs, logits, dirs, grads):
    """torch.func: a per-state vjp (grad of <log pi(s), v> in s) vmapped over the batch."""
    params = dict(student.named_parameters())

    def projected(p, state, v):
        return (F.log_softmax(functional_call(student, p, (state[None],)), 1)[0] * v).sum()

    g = vmap(grad(projected, argnums=1), in_dims=(None, 0, 0))(params, obs, dirs[:, 0]).unsqueeze(1)
    total = policy_kl(student(obs), logits) + sobolev_distance(g, grads, "cosine")
    return total, total


def to_channels_last(student):
    """The student's weights in channels-last memory order (and so its activations: the batch follows them)."""
    return student.to(memory_format=torch.channels_last)


class SpaceToDepthConv2d(torch.nn.Conv2d):
    """A Conv2d whose kernel is twice its stride, computed as pixel_unshuffle(stride) then a 2x2 stride-1 conv of the
    same weights, rearranged: the same sums in another order, and dense stride-1 kernels for the input gradient."""

    def forward(self, x):
        s = self.stride[0]
        o, c = self.weight.shape[:2]
        w = self.weight.view(o, c, 2, s, 2, s).permute(0, 1, 3, 5, 2, 4).reshape(o, c * s * s, 2, 2)
        return F.conv2d(F.pixel_unshuffle(x, s), w, self.bias)


def space_to_depth(student):
    """The student with each conv layer whose kernel is twice its stride computed by SpaceToDepthConv2d."""
    for i, layer in enumerate(student.features):
        if isinstance(layer, torch.nn.Conv2d) and layer.kernel_size[0] == 2 * layer.stride[0]:
            new = SpaceToDepthConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride)
            new.load_state_dict(layer.state_dict())
            student.features[i] = new
    return student


def with_cosine(cosine):
    """The double-backward step with the cosine between the student's and the teacher's maps (each ``[B, K, N]``)
    computed by ``cosine``: the ways the distance was computed before its gradient was written out."""

    def step(student, obs, logits, dirs, grads):
        x = obs.detach().requires_grad_(True)
        student_logits = student(x)
        g = input_gradients(F.log_softmax(student_logits, 1), x, dirs).flatten(2)
        total = policy_kl(student_logits, logits) + (1.0 - cosine(g, grads.flatten(2).to(g.dtype))).mean()
        return total, total

    return step


def normalised_copies_cosine(g, t):
    """F.cosine_similarity, which makes normalised copies of both maps."""
    return F.cosine_similarity(g, t, dim=-1, eps=1e-12)


def three_sums_cosine(g, t):
    """From three elementwise products summed."""
    return (g * t).sum(-1) / ((g * g).sum(-1).clamp_min(1e-24).sqrt() * (t * t).sum(-1).clamp_min(1e-24).sqrt())


def dot_products_cosine(g, t):
    """From three dot products, differentiated by autograd."""
    dot = torch.linalg.vecdot
    return dot(g, t) / (dot(g, g).clamp_min(1e-24).sqrt() * dot(t, t).clamp_min(1e-24).sqrt())


# name: (how the alpha-1 loss is computed, how the student is changed first, whether backward() is told to compute
# the parameters' gradients only)
VARIANTS = {
    "double backward": (double_backward, None, True),
    "double backward + obs gradient (before)": (double_backward, None, False),
    "forward-over-reverse": (forward_over_reverse, None, True),
    "torch.func vmap": (func_vmap, None, True), "channels-last": (double_backward, to_channels_last, True),
    "torch.compile": (double_backward, torch.compile, True),
    "F.cosine_similarity (before)": (with_cosine(normalised_copies_cosine), None, True),
    "cosine from three sums (before)": (with_cosine(three_sums_cosine), None, True),
    "cosine by autograd of dot products (before)": (with_cosine(dot_products_cosine), None, True),
    "space-to-depth convs": (double_backward, space_to_depth, True),
}


def compare_variants(data: TrainingData, steps: int, batch: int, student_name: str, device: torch.device,
                     n_actions: int, repeats: int) -> None:
    """Median ms per step of each variant against the alpha-0 step, all measured in turn ``repeats`` times on the same
    batches (so that a slow spell of the machine touches every variant alike); and each variant's loss and parameter
    gradients on one batch against today's, which a variant must match to 1e-5 to be adopted."""
    gen = torch.Generator().manual_seed(0)
    first = data.batch(torch.randint(data.n, (batch,), generator=gen).to(device))

    def gradients(variant, prepare):
        torch.manual_seed(0)
        student = make_student(student_name, n_actions).to(device)
        target, loss = variant(student if prepare is None else prepare(student), *first)
        target.backward()
        return float(loss.detach()), [p.grad.detach().clone().contiguous() for p in student.parameters()]

    reference_loss, reference = gradients(double_backward, None)
    differences, failures = {}, {}
    for name, (variant, prepare, _) in VARIANTS.items():
        try:
            loss, got = gradients(variant, prepare)
        except RuntimeError as exc:  # torch.compile cannot double-backward (aot_autograd)
            failures[name] = str(exc).splitlines()[0][:120]
            continue
        differences[name] = (abs(loss - reference_loss), max(
            ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item() for a, b in zip(got, reference)))
    alpha0: dict = {}
    alpha1: dict = {name: [] for name in differences}
    for _ in range(repeats):
        for name in differences:
            variant, prepare, params_only = VARIANTS[name]
            if len(alpha0.setdefault(prepare, [])) < len(alpha1[name]) + 1:
                alpha0[prepare].append(bench(data, 0.0, steps, batch, student_name, device, n_actions,
                                             prepare=prepare)["median_step_ms"])
            alpha1[name].append(bench(data, 1.0, steps, batch, student_name, device, n_actions, step=variant,
                                      prepare=prepare, params_only=params_only)["median_step_ms"])
    print(f"sobolev step variants (alpha 1, cosine distance), median ms/step over {repeats} rounds of {steps} steps, "
          "each against the alpha-0 step of the same student; loss and gradients on one batch against double "
          "backward:")
    for name in VARIANTS:
        if name in failures:
            print(f"  {name:44s} fails: {failures[name]}")
            continue
        ms, ms0 = statistics.median(alpha1[name]), statistics.median(alpha0[VARIANTS[name][1]])
        loss_diff, grad_diff = differences[name]
        print(f"  {name:44s} alpha 1 {ms:7.2f} ms/step, alpha 0 {ms0:6.2f} ms/step, ratio {ms / ms0:4.2f}x; loss "
              f"differs by {loss_diff:.1e}, gradients by {grad_diff:.1e} (largest difference over each tensor's "
              "largest value)")


@cli_entry
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=200, help="timed steps per round (after 10 of warm-up)")
    p.add_argument("--repeats", type=int, default=3, help="rounds of each measurement, taken in turn")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--student", default="paper")
    p.add_argument("--device", default="auto")
    p.add_argument("--paths", nargs="+", default=["memory", "streamed"], choices=["memory", "streamed"],
                   help="how the training rows are read (default both)")
    p.add_argument("--sobolev-variants", action="store_true",
                   help="also time other ways to compute the Sobolev step on the in-memory rows, and check that "
                        "they give today's loss and gradients")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    episodes, attrs = recording_episodes(args.dataset)
    n_actions = int(attrs["n_actions"])
    split = split_by_episodes(episodes, args.fraction, 0)
    print(f"device {device}, torch threads {torch.get_num_threads()}, {len(split.train_rows)} training states, "
          f"batch {args.batch_size}, student {args.student}")
    for path in args.paths:
        results: dict[float, list[dict]] = {0.0: [], 1.0: []}
        for _ in range(args.repeats):  # alpha 0 and alpha 1 in turn, so that a slow spell touches both
            for alpha in (0.0, 1.0):
                # a fresh reader per run: the streamed one's workers serve one run's draws; like distill-train, a
                # KL-only run reads neither directions nor gradient maps
                data = (TrainingData if path == "memory" else StreamingData)(args.dataset, split.train_rows, device,
                                                                              with_gradients=alpha > 0)
                results[alpha].append(bench(data, alpha, args.steps, args.batch_size, args.student, device,
                                            n_actions))
                if isinstance(data, StreamingData):
                    data.close()
        medians = {}
        for alpha, runs in results.items():
            medians[alpha] = statistics.median(r["median_step_ms"] for r in runs)
            rate = statistics.median(r["samples_per_s"] for r in runs)
            wait = statistics.median(r["data_wait_share"] for r in runs)
            print(f"{path:8s} alpha {alpha:g}: {rate:8.1f} samples/s, median {medians[alpha]:7.2f} ms/step, data "
                  f"wait {100 * wait:.1f}% of step time (medians over {args.repeats} rounds of {args.steps} steps)")
        rounds = ", ".join(f"{b['median_step_ms'] / a['median_step_ms']:.2f}x"
                           for a, b in zip(results[0.0], results[1.0]))
        print(f"{path:8s} alpha-1 step / alpha-0 step: {medians[1.0] / medians[0.0]:.2f}x (each round: {rounds})")
    if args.sobolev_variants:
        compare_variants(TrainingData(args.dataset, split.train_rows, device), args.steps, args.batch_size,
                         args.student, device, n_actions, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
