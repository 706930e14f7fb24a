"""CleanRL Atari checkpoints (``torch.save(agent.state_dict(), ...)``): the networks of ``ppo_atari.py`` and
``dqn_atari.py``, rebuilt from CleanRL's published layout and filled with ``weights_only=True``.

Both scripts' agents divide pixel values by 255 before the Nature-CNN trunk; these take the toolkit's scaled
observations instead, which is the same computation.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from distill.environment.errors import UserError
from teachers.teacher import load_state_strictly


def nature_trunk() -> list[nn.Module]:
    """CleanRL's convolutional trunk, layer for layer (so that state-dict keys match its ``network.N``)."""
    return [nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU()]


class CleanRLActorCritic(nn.Module):
    """``ppo_atari.py``'s ``Agent``: shared trunk, ``actor`` logits head, ``critic`` value head."""

    def __init__(self, n_actions: int):
        super().__init__()
        self.network = nn.Sequential(*nature_trunk())
        self.actor = nn.Linear(512, n_actions)
        self.critic = nn.Linear(512, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.actor(self.network(x))


class CleanRLQNetwork(nn.Module):
    """``dqn_atari.py``'s ``QNetwork``: the trunk followed by the Q head, in one ``network`` sequence."""

    def __init__(self, n_actions: int):
        super().__init__()
        self.network = nn.Sequential(*nature_trunk(), nn.Linear(512, n_actions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


def looks_like_cleanrl(state: Mapping) -> bool:
    return isinstance(state, Mapping) and "network.0.weight" in state


def load_cleanrl(state: Mapping[str, torch.Tensor], source: str) -> tuple[nn.Module, str, str, int]:
    """(network, kind, outputs, action count) for a CleanRL state dict."""
    if "actor.weight" in state:
        n = int(state["actor.weight"].shape[0])
        network, kind, outputs = CleanRLActorCritic(n), "cleanrl_ppo", "logits"
    elif "network.9.weight" in state:
        n = int(state["network.9.weight"].shape[0])
        network, kind, outputs = CleanRLQNetwork(n), "cleanrl_dqn", "q"
    else:
        raise UserError(f"{source} is a state dict with a network.* trunk but neither an actor head (ppo_atari.py) nor "
                        "a Q head network.9 (dqn_atari.py); other CleanRL agents are not supported: wrap yours with "
                        "Teacher.from_module")
    load_state_strictly(network, state, source)
    return network.eval(), kind, outputs, n
