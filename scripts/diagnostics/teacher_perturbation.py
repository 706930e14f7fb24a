#!/usr/bin/env python
"""How many game points does a given amount of disagreement with the teacher cost, when it falls at random?

A student that disagrees with its teacher on 12% of the held-out states (KL 0.04 nats) may still score well below
it. Is that the size of the disagreement, or where it falls? This plays the teacher itself, perturbed so that it
disagrees with the unperturbed teacher by a chosen amount but with no preference for any state:

- ``--match-kl X``: Gaussian noise of one fixed scale added to the logits at every step, the scale chosen so that
  the mean ``KL(pi* || pi_noisy)`` over the recording's states is X (a student's held-out KL, say);
- ``--match-entropy H``: the logits divided by one temperature, chosen so that the mean policy entropy over the
  recording's states is H (a student's, if the students are more random than the teacher).

If the perturbed teacher keeps its score, disagreement of that size is harmless when spread at random, and a
student's lower score means its errors fall on the states that decide the game.

    python scripts/diagnostics/teacher_perturbation.py --dataset data/recordings/breakout-100k-t5.75M-s0.h5 \\
        --match-kl 0.037 --match-entropy 0.94 --episodes 30

Teachers load through the safe path (nothing from the file is run; docs/usage.md, "Bring your own teacher").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F


from distill.recording.schema import open_recording
from distill.environment.errors import UserError, cli_entry
from distill.evaluation.rollout import MODES, play


def mean_entropy(logits: torch.Tensor) -> float:
    """Mean over states of the policy entropy ``-sum_a pi(a) log pi(a)`` in nats."""
    return float(-(F.softmax(logits, 1) * F.log_softmax(logits, 1)).sum(1).mean())


def mean_kl(teacher_logits: torch.Tensor, other_logits: torch.Tensor) -> float:
    """Mean over states of ``KL(pi* || pi)`` in nats, ``pi*`` from ``teacher_logits``."""
    log_t = F.log_softmax(teacher_logits, 1)
    return float((log_t.exp() * (log_t - F.log_softmax(other_logits, 1))).sum(1).mean())


def _bisect(f: Callable[[float], float], target: float, low: float, high: float, what: str) -> float:
    """The x in [low, high] where the increasing function f reaches target."""
    if not f(low) <= target <= f(high):
        raise UserError(f"{what} {target} is out of reach: it must lie between {f(low):.4g} and {f(high):.4g}")
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if f(mid) < target else (low, mid)
    return (low + high) / 2


def temperature_for_entropy(logits: torch.Tensor, target: float) -> float:
    """The temperature T at which ``softmax(logits / T)`` has mean entropy ``target`` (entropy rises with T)."""
    return _bisect(lambda t: mean_entropy(logits / t), target, 0.01, 100.0, "--match-entropy")


def noise_scale_for_kl(logits: torch.Tensor, noise: torch.Tensor, target: float) -> float:
    """The std sigma at which logits plus ``sigma * noise`` have mean ``KL(pi* || pi_noisy)`` equal to ``target``.

    ``noise`` is one fixed standard-normal draw per state and action, so that the KL is a smooth, increasing
    function of sigma.
    """
    return _bisect(lambda s: mean_kl(logits, logits + s * noise), target, 0.0, 50.0, "--match-kl")


def recorded_logits(dataset: Path, states: int, seed: int) -> torch.Tensor:
    """The teacher's logits on ``states`` states of the recording, drawn with a fixed seed."""
    with open_recording(dataset) as f:
        n = len(f["logits"])
        rows = np.sort(np.random.default_rng(seed).choice(n, min(states, n), replace=False))
        return torch.from_numpy(f["logits"][rows]).float()


def noisy(teacher: torch.nn.Module, sigma: float, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The teacher with fresh Gaussian noise of std ``sigma`` on its logits at every step."""
    gen = torch.Generator().manual_seed(seed)

    def policy(obs: torch.Tensor) -> torch.Tensor:
        logits = teacher(obs)
        return logits + sigma * torch.randn(logits.shape, generator=gen)

    return policy


def tempered(teacher: torch.nn.Module, temperature: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda obs: teacher(obs) / temperature


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, required=True,
                   help="a recording of the teacher (calibrates the perturbations)")
    p.add_argument("--teacher", default=None, help="the recording's teacher (default: the shipped one of its game)")
    p.add_argument("--match-kl", type=float, nargs="*", default=[], metavar="X",
                   help="mean KL(pi* || pi_noisy) in nats to reach with logit noise (one game series each)")
    p.add_argument("--match-entropy", type=float, nargs="*", default=[], metavar="H",
                   help="mean policy entropy in nats to reach with a temperature (one game series each)")
    p.add_argument("--no-baseline", action="store_true", help="do not also play the unperturbed teacher")
    p.add_argument("--states", type=int, default=5000, help="recorded states used to calibrate (default 5000)")
    p.add_argument("--episodes", type=int, default=30, help="whole games per policy (default 30)")
    p.add_argument("--mode", choices=MODES, default="sample", help="sample or greedy actions (default sample)")
    p.add_argument("--envs", type=int, default=6, help="games played side by side (default 6)")
    p.add_argument("--seed", type=int, default=0, help="game seeds (the same for every policy) and noise seed")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    from teachers.load import load_teacher

    with open_recording(args.dataset) as f:
        game = str(f.attrs["game"])
    logits = recorded_logits(args.dataset, args.states, args.seed)
    teacher = load_teacher(args.teacher, game).eval()
    noise_draw = torch.randn(logits.shape, generator=torch.Generator().manual_seed(args.seed))
    series = [] if args.no_baseline else [("teacher", "-", teacher, logits)]
    for kl in args.match_kl:
        sigma = noise_scale_for_kl(logits, noise_draw, kl)
        series.append((f"logit noise, KL {kl:g}", f"sigma {sigma:.4f}", noisy(teacher, sigma, args.seed),
                       logits + sigma * noise_draw))
    for entropy in args.match_entropy:
        t = temperature_for_entropy(logits, entropy)
        series.append((f"temperature, entropy {entropy:g}", f"T {t:.4f}", tempered(teacher, t), logits / t))
    print(f"{game}: teacher entropy {mean_entropy(logits):.4f} nats on {len(logits)} recorded states; "
          f"{args.episodes} {args.mode} games per policy, seeds from {args.seed}")
    results = []
    for name, setting, policy, perturbed in series:
        with torch.no_grad():
            result = play(policy, game, args.episodes, mode=args.mode, seed=args.seed, envs=args.envs)
        results.append({"policy": name, "setting": setting, "kl": mean_kl(logits, perturbed),
                        "action_error": float((perturbed.argmax(1) != logits.argmax(1)).float().mean()),
                        "entropy": mean_entropy(perturbed), **result.summary()})
    print("| policy | setting | KL(pi* || pi) | action error | entropy | game score |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['policy']} | {r['setting']} | {r['kl']:.4f} | {r['action_error']:.3f} | {r['entropy']:.3f} | "
              f"{r['mean_return']:.1f} ± {r['std_return']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"dataset": str(args.dataset), "mode": args.mode, "seed": args.seed,
                                         "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
