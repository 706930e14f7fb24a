"""Student networks: plain ``torch.nn.Module``s mapping scaled observations [B, 4, 84, 84] to logits [B, A].

The paper distils a teacher with 3 conv layers and two fully connected layers (NatureCNN:
32-64-64 filters, 512 hidden units, about 1.7M parameters with 4 actions) into a student with
2 conv layers and a single, smaller fully connected layer. The default ``paper`` student is the
2013 DQN network (16 8x8/4 and 32 4x4/2 filters, 256 hidden units, about 0.68M parameters).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from distill.environment import atari
from distill.environment.errors import UserError


class ConvPolicy(nn.Module):
    """Conv layers (ReLU) -> one hidden fully connected layer (ReLU) -> action logits."""

    def __init__(self, n_actions: int, convs: list[tuple[int, int, int]], hidden: int):
        super().__init__()
        layers: list[nn.Module] = []
        channels = atari.OBS_SHAPE[0]
        for out_channels, kernel, stride in convs:
            layers += [nn.Conv2d(channels, out_channels, kernel, stride=stride), nn.ReLU()]
            channels = out_channels
        self.features = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            n_flat = self.features(torch.zeros(1, *atari.OBS_SHAPE)).shape[1]
        self.head = nn.Sequential(nn.Linear(n_flat, hidden), nn.ReLU(), nn.Linear(hidden, n_actions))
        self.n_actions = n_actions

    def forward(self, obs_scaled: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(obs_scaled))


NATURE_CONVS = [(32, 8, 4), (64, 4, 2), (64, 3, 1)]  # the teacher's (NatureCNN's) conv layers: filters, kernel, stride

STUDENTS: dict[str, Callable[[int], nn.Module]] = {
    "small": lambda a: ConvPolicy(a, [(8, 8, 4), (16, 4, 2)], 128),
    "paper": lambda a: ConvPolicy(a, [(16, 8, 4), (32, 4, 2)], 256),
    # the teacher's three conv layers with half its hidden units: 0.88M parameters, 52% of the teacher, to tell
    # whether what the teacher-sized student gains at small fractions comes from its conv stack or its width
    "nature-half": lambda a: ConvPolicy(a, NATURE_CONVS, 256),
    "nature": lambda a: ConvPolicy(a, NATURE_CONVS, 512),  # the teacher's shape
}


def make_student(name: str, n_actions: int) -> nn.Module:
    """Build a registered student; unknown names are a user error listing the choices."""
    if name not in STUDENTS:
        raise UserError(f"unknown --student {name!r}; choose one of {', '.join(STUDENTS)}")
    return STUDENTS[name](n_actions)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
