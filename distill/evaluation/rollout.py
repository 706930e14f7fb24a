"""Play whole Atari games with a policy and report unclipped game scores (DESIGN.md section 6).

A policy is any callable mapping scaled observations ``float32[B, 4, 84, 84]`` to logits
``[B, A]``: a :class:`teachers.Teacher` or a student network alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from distill.environment import atari

MODES = ("sample", "greedy")


@dataclass
class RolloutResult:
    """Scores of ``episodes`` whole games played with one action-selection mode."""

    mode: str
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    def summary(self) -> dict:
        r = np.asarray(self.returns, dtype=np.float64)
        return {"mode": self.mode, "episodes": len(r), "mean_return": float(r.mean()), "std_return": float(r.std()),
                "min_return": float(r.min()), "max_return": float(r.max()),
                "mean_length": float(np.mean(self.lengths)), "returns": [float(x) for x in r]}


@torch.no_grad()
def play(policy: Callable[[torch.Tensor], torch.Tensor], game: str, episodes: int, mode: str = "sample",
         seed: int = 0, envs: int = 1, device: torch.device | str = "cpu", progress: bool = True,
         epsilon: float = 0.0,
         on_step: Callable[[np.ndarray, list[dict], np.ndarray], None] | None = None) -> RolloutResult:
    """Play ``episodes`` whole games; env ``i`` of ``envs`` plays its share with seed ``seed + i``.

    Each environment plays a fixed number of games (as stable-baselines3's ``evaluate_policy``),
    so parallel play does not favour short games. ``mode`` is ``sample`` (draw from the policy)
    or ``greedy`` (argmax); ``epsilon`` mixes in uniform random actions. ``on_step(dones, infos, counted)``,
    if given, sees every step's outcome; ``counted[i]`` says env ``i`` just finished a game that is in the result.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    envs = max(1, min(envs, episodes))
    targets = np.array([episodes // envs + (1 if i < episodes % envs else 0) for i in range(envs)])
    counts = np.zeros(envs, dtype=int)
    venv = atari.make_vec_env(game, n_envs=envs, seed=seed, training=False)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    rng = np.random.default_rng(seed)
    result = RolloutResult(mode)
    obs = venv.reset()
    bar = tqdm(total=episodes, desc=f"{game} {mode}", unit="game", disable=not progress, dynamic_ncols=True)
    try:
        while (counts < targets).any():
            logits = policy(atari.scale_obs(obs).to(device)).float().cpu()
            if mode == "greedy":
                actions = logits.argmax(dim=1)
            else:
                actions = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=gen).squeeze(1)
            actions = actions.numpy()
            if epsilon > 0:
                explore = rng.random(envs) < epsilon
                actions = np.where(explore, rng.integers(0, logits.shape[1], envs), actions)
            obs, _, dones, infos = venv.step(actions)
            counted = np.zeros(envs, dtype=bool)
            for i, (done, info) in enumerate(zip(dones, infos)):
                if done and "episode" in info and counts[i] < targets[i]:
                    result.returns.append(float(info["episode"]["r"]))
                    result.lengths.append(int(info["episode"]["l"]))
                    counts[i] += 1
                    counted[i] = True
                    bar.update(1)
                    bar.set_postfix(mean=f"{np.mean(result.returns):.1f}", refresh=False)
            if on_step is not None:
                on_step(dones, infos, counted)
    finally:
        bar.close()
        venv.close()
    return result
