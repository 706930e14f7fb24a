"""Student networks: plain ``torch.nn.Module``s mapping scaled observations [B, 4, 84, 84] to logits [B, A].

The paper distils a teacher with 3 conv layers and two fully connected layers (NatureCNN:
32-64-64 filters, 512 hidden units, about 1.7M parameters with 4 actions) into a student with
2 conv layers and a single, smaller fully connected layer. The default ``paper`` student is the
2013 DQN network (16 8x8/4 and 32 4x4/2 filters, 256 hidden units, about 0.68M parameters).

Every student uses ReLU by default, as the paper's do. A ReLU network's input gradient is piecewise constant in its
input, so the Sobolev term can match slopes but gives the kinks no signal; ``activation`` swaps in a smooth one
(docs/results.md, "Student activation", measures whether that helps).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from distill.environment import atari
from distill.environment.errors import UserError


# hidden-layer activations a student can use; relu is the paper's, the others have smooth input gradients
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh,
                                                   "softplus": nn.Softplus}


def conv_features(convs: list[tuple[int, int, int]], activation: str) -> tuple[nn.Sequential, int]:
    """Conv layers, each followed by the activation, then a flatten; and the number of features they give."""
    layers: list[nn.Module] = []
    channels = atari.OBS_SHAPE[0]
    for out_channels, kernel, stride in convs:
        layers += [nn.Conv2d(channels, out_channels, kernel, stride=stride), ACTIVATIONS[activation]()]
        channels = out_channels
    features = nn.Sequential(*layers, nn.Flatten())
    with torch.no_grad():
        return features, features(torch.zeros(1, *atari.OBS_SHAPE)).shape[1]


class ConvPolicy(nn.Module):
    """Conv layers -> one hidden fully connected layer -> action logits, with one activation after each hidden
    layer (ReLU unless told otherwise)."""

    def __init__(self, n_actions: int, convs: list[tuple[int, int, int]], hidden: int, activation: str = "relu"):
        super().__init__()
        act = ACTIVATIONS[activation]
        self.features, n_flat = conv_features(convs, activation)
        self.head = nn.Sequential(nn.Linear(n_flat, hidden), act(), nn.Linear(hidden, n_actions))
        self.n_actions = n_actions

    def forward(self, obs_scaled: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(obs_scaled))


NATURE_CONVS = [(32, 8, 4), (64, 4, 2), (64, 3, 1)]  # the teacher's (NatureCNN's) conv layers: filters, kernel, stride

# name -> (conv layers, hidden units)
STUDENTS: dict[str, tuple[list[tuple[int, int, int]], int]] = {
    "small": ([(8, 8, 4), (16, 4, 2)], 128),
    "paper": ([(16, 8, 4), (32, 4, 2)], 256),
    # the teacher's three conv layers with half its hidden units: 0.88M parameters, 52% of the teacher, to tell
    # whether what the teacher-sized student gains at small fractions comes from its conv stack or its width
    "nature-half": (NATURE_CONVS, 256),
    "nature": (NATURE_CONVS, 512),  # the teacher's shape
}


def make_student(name: str, n_actions: int, activation: str = "relu") -> nn.Module:
    """Build a registered student; unknown names or activations are a user error listing the choices."""
    if name not in STUDENTS:
        raise UserError(f"unknown --student {name!r}; choose one of {', '.join(STUDENTS)}")
    if activation not in ACTIVATIONS:
        raise UserError(f"unknown --activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
    convs, hidden = STUDENTS[name]
    return ConvPolicy(n_actions, convs, hidden, activation)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class MultiGamePolicy(nn.Module):
    """One student for several games (Rusu et al.'s multi-task distillation): a shared trunk, the conv layers and
    the hidden fully connected layer of a registered student, and one output layer per game, since the games'
    action sets differ. ``forward`` takes a batch that holds the games in ``games`` order, ``sizes`` states each, and
    returns one logits tensor per game; :meth:`for_game` is one game's policy as a plain single-game module."""

    def __init__(self, n_actions: dict[str, int], convs: list[tuple[int, int, int]], hidden: int,
                 activation: str = "relu"):
        super().__init__()
        features, n_flat = conv_features(convs, activation)
        self.trunk = nn.Sequential(*features, nn.Linear(n_flat, hidden), ACTIVATIONS[activation]())
        self.heads = nn.ModuleDict({game: nn.Linear(hidden, n) for game, n in n_actions.items()})
        self.games = list(n_actions)
        self.n_actions = dict(n_actions)

    def forward(self, obs_scaled: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
        features = self.trunk(obs_scaled).split(list(sizes))
        return [self.heads[game](part) for game, part in zip(self.games, features, strict=True)]

    def for_game(self, game: str) -> "GamePolicy":
        if game not in self.heads:
            raise UserError(f"this student plays {', '.join(self.games)}, not {game}")
        return GamePolicy(self, game)


class GamePolicy(nn.Module):
    """One game's policy of a :class:`MultiGamePolicy` (shares its parameters): scaled observations to that game's
    logits, so that evaluation and rollouts treat it as any single-game student."""

    def __init__(self, student: MultiGamePolicy, game: str):
        super().__init__()
        self.student, self.game, self.n_actions = student, game, student.n_actions[game]

    def forward(self, obs_scaled: torch.Tensor) -> torch.Tensor:
        return self.student.heads[self.game](self.student.trunk(obs_scaled))


def make_multigame_student(name: str, n_actions: dict[str, int], activation: str = "relu") -> MultiGamePolicy:
    """A registered student's shape with one output layer per game of ``n_actions`` (game -> action count)."""
    make_student(name, 1, activation)  # the same one-line errors for unknown names or activations
    convs, hidden = STUDENTS[name]
    return MultiGamePolicy(n_actions, convs, hidden, activation)
