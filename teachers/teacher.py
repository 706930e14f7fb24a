"""The teacher contract (docs/design.md section 3): scaled observations in, action logits out.

Every source (stable-baselines3 zips, rl-baselines3-zoo folders, CleanRL checkpoints, TorchScript files, any
``torch.nn.Module``) ends as a :class:`Teacher`, so recording, training and evaluation never ask where one came from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import nn

from distill.environment import atari
from distill.environment.errors import UserError

DEFAULT_TEMPERATURE = 0.01  # Rusu et al. (2016), policy distillation from DQN
OUTPUTS = ("logits", "q")  # what a network gives: action logits, or action values turned into logits by a temperature


def file_sha256(path: str | Path) -> str:
    """Content hash that identifies a teacher in datasets and runs."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def state_sha256(module: nn.Module) -> str:
    """Hash of a module's tensors (names, shapes, values): identifies a teacher that has no file."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_state_strictly(module: nn.Module, state: Mapping[str, torch.Tensor], source: str,
                        skipped: Iterable[str] = ()) -> None:
    """Fill every tensor of ``module`` from ``state``, leaving no checkpoint tensor unused.

    ``skipped`` names checkpoint prefixes the teacher does not need and drops on purpose. Anything else that
    differs is an error naming the first differing key, so that no layer is left at its random initialisation.
    """
    skipped = tuple(skipped)
    state = {k: v for k, v in state.items() if not k.startswith(skipped)}
    expected = module.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise UserError(f"{source}: tensor {key} {tuple(tensor.shape)} is missing from the checkpoint; it was "
                            "saved from another network layout")
        if not isinstance(state[key], torch.Tensor) or state[key].shape != tensor.shape:
            got = tuple(state[key].shape) if isinstance(state[key], torch.Tensor) else type(state[key]).__name__
            raise UserError(f"{source}: tensor {key} has shape {got} in the checkpoint but {tuple(tensor.shape)} in "
                            "the network rebuilt from its settings; the checkpoint and its settings disagree")
    extra = [k for k in state if k not in expected]
    if extra:
        raise UserError(f"{source}: the checkpoint has tensor {extra[0]} {tuple(state[extra[0]].shape)} that the "
                        f"rebuilt network lacks ({len(extra)} unused in all); it was saved from another network layout")
    module.load_state_dict(state, strict=True)


class Teacher(nn.Module):
    """Scaled observations ``float32[B, 4, 84, 84]`` in [0, 1] -> action logits ``[B, A]``, differentiable in the input.

    ``network`` gives logits, or action values (``outputs="q"``) that become ``Q / temperature``. ``input_scale`` is
    255 for networks that expect raw pixel values. ``notes`` lists ways the source's preprocessing differs from ours.
    """

    def __init__(self, network: nn.Module, game: str, n_actions: int, sha256: str, path: str, kind: str,
                 outputs: str = "logits", temperature: float = DEFAULT_TEMPERATURE, input_scale: float = 1.0,
                 notes: Iterable[str] = ()):
        super().__init__()
        if outputs not in OUTPUTS:
            raise UserError(f"teacher outputs must be one of {', '.join(OUTPUTS)}, got {outputs!r}")
        if temperature <= 0:
            raise UserError(f"--temperature must be positive, got {temperature}")
        self.network = network
        self.game = game
        self.n_actions = n_actions
        self.sha256 = sha256
        self.path = path  # where it was loaded from; recordings store it so that a later command can reload it
        self.kind = kind
        self.outputs = outputs
        self.temperature = temperature
        self.input_scale = input_scale
        self.notes = list(notes)
        self.eval()
        for param in self.parameters():
            param.requires_grad_(False)

    def forward(self, obs_scaled: torch.Tensor) -> torch.Tensor:
        x = obs_scaled * self.input_scale if self.input_scale != 1.0 else obs_scaled
        out = self.network(x)
        return out / self.temperature if self.outputs == "q" else out

    def describe(self) -> str:
        line = f"{self.kind} teacher for {self.game} ({self.n_actions} actions, sha256 {self.sha256[:12]}) from {self.path}"
        return line + (f"; its training preprocessing differs from ours: {'; '.join(self.notes)}" if self.notes else "")

    @classmethod
    def from_module(cls, module: nn.Module, game: str, outputs: str = "logits", input_scale: float = 1.0,
                    temperature: float = DEFAULT_TEMPERATURE, name: str | None = None) -> Teacher:
        """Wrap any network that maps ``[B, 4, 84, 84]`` frame stacks to ``[B, A]`` logits or action values.

        ``input_scale=255`` for a network that expects pixel values in [0, 255]. The module is checked on one
        blank observation: its output must have the game's action count.
        """
        game = atari.canonical_game(game)
        return checked(cls(module, game, atari.n_actions(game), state_sha256(module),
                           name or f"module:{type(module).__name__}", kind="module", outputs=outputs,
                           temperature=temperature, input_scale=input_scale))


def checked(teacher: Teacher) -> Teacher:
    """``teacher``, after one blank observation shows that its output fits its game."""
    device = next((p.device for p in teacher.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad():
            out = teacher(torch.zeros((1, *atari.OBS_SHAPE), device=device))
    except Exception as exc:  # a network built for other inputs fails here, not mid-recording
        raise UserError(f"teacher {teacher.path} cannot take Atari frame stacks {atari.OBS_SHAPE} "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if tuple(out.shape) != (1, teacher.n_actions):
        raise UserError(f"teacher {teacher.path} outputs shape {tuple(out.shape[1:])} per state but {teacher.game} has "
                        f"{teacher.n_actions} actions; it was made for another game: pass a teacher for this game")
    return teacher
