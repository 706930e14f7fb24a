"""Rebuild a stable-baselines3 policy from its ``.zip`` without unpickling anything from the file.

An SB3 zip holds ``data`` (JSON; objects that JSON cannot hold are cloudpickled into ``:serialized:`` entries, beside
readable fields such as a space's ``_shape`` and ``n``, a class's ``__module__`` and its methods' names, and
``policy_kwargs`` values as text) and ``policy.pth`` (a state dict). The safe path reads only the readable fields, maps
the policy class to an allow-list of classes installed here, rebuilds the network from settings it can parse, and reads
``policy.pth`` with ``torch.load(weights_only=True)``. ``policy.optimizer.pth`` and ``pytorch_variables.pth`` are
never read: a teacher is not trained further. Anything it cannot rebuild is refused, naming the opt-in
(``--trust-checkpoint``: SB3's own loader, which runs code stored in the file).
"""

from __future__ import annotations

import ast
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from distill.environment import atari
from distill.environment.errors import UserError
from teachers.teacher import load_state_strictly

TRUST_FLAG = "--trust-checkpoint"
TRUST_HELP = ("load stable-baselines3 zips with SB3's own loader and allow TorchScript files: this RUNS CODE FROM "
              "THE FILE; only for files you trust (default: rebuilt from readable settings, nothing unpickled)")
TRUST_HINT = f"pass {TRUST_FLAG} (API: trust_checkpoint=True) to load it with stable-baselines3's own loader, which runs code from the file"

# (module, class name) -> (kind, importable path): the CNN policies of A2C/PPO, DQN and QR-DQN
ALLOWED_POLICIES = {
    ("stable_baselines3.common.policies", "ActorCriticCnnPolicy"):
        ("actor_critic", "stable_baselines3.common.policies:ActorCriticCnnPolicy"),
    ("stable_baselines3.dqn.policies", "CnnPolicy"): ("dqn", "stable_baselines3.dqn.policies:CnnPolicy"),
    ("sb3_contrib.qrdqn.policies", "CnnPolicy"): ("qrdqn", "sb3_contrib.qrdqn.policies:CnnPolicy"),
}
ACTIVATIONS = {f"<class 'torch.nn.modules.activation.{n}'>": getattr(nn, n)
               for n in ("ReLU", "Tanh", "ELU", "LeakyReLU", "SiLU", "GELU", "Sigmoid")}
NATURE_CNN = "<class 'stable_baselines3.common.torch_layers.NatureCNN'>"
IGNORED_KWARGS = ("optimizer_class", "optimizer_kwargs")  # how it was trained, not what it computes


class ActorCriticLogits(nn.Module):
    """The action logits of an SB3 actor-critic policy, from inputs already scaled as its features extractor expects."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.policy
        extractor = p.features_extractor if p.share_features_extractor else p.pi_features_extractor
        return p.action_net(p.mlp_extractor.forward_actor(extractor(x)))


class QValues(nn.Module):
    """The action values of an SB3 DQN policy's online network."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q_net = self.policy.q_net
        return q_net.q_net(q_net.features_extractor(x))


class QuantileMeans(nn.Module):
    """The action values (mean over quantiles) of a QR-DQN policy's online network."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.policy.quantile_net
        return net.quantile_net(net.features_extractor(x)).view(-1, net.n_quantiles, int(net.action_space.n)).mean(1)


HEADS: dict[str, tuple[Callable[[nn.Module], nn.Module], str]] = {
    "actor_critic": (ActorCriticLogits, "logits"), "dqn": (QValues, "q"), "qrdqn": (QuantileMeans, "q")}


def is_sb3_zip(path: Path) -> bool:
    """A zip with SB3's two essential members."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return {"data", "policy.pth"} <= set(archive.namelist())


def _readable(entry: Any) -> dict:
    """The readable fields of a ``data`` entry (everything but the pickle and its type line)."""
    if not isinstance(entry, dict):
        return {}
    return {k: v for k, v in entry.items() if k not in (":serialized:", ":type:")}


def _literal(text: Any, what: str, path: Path) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise UserError(f"{path}: policy setting {what}={text[:60]} cannot be rebuilt safely; {TRUST_HINT}") from None


def _policy_kwargs(entry: Any, path: Path) -> dict:
    """``policy_kwargs`` rebuilt from text, for the settings a CNN policy's forward pass depends on."""
    kwargs = {}
    for key, value in _readable(entry).items():
        if key in IGNORED_KWARGS:
            continue
        if key == "activation_fn":
            if value not in ACTIVATIONS:
                raise UserError(f"{path}: activation {value} is not one this loader rebuilds; {TRUST_HINT}")
            kwargs[key] = ACTIVATIONS[value]
        elif key == "features_extractor_class":
            if value != NATURE_CNN:
                raise UserError(f"{path}: custom features extractor {value}; {TRUST_HINT}")
        elif key in ("net_arch", "normalize_images", "share_features_extractor", "ortho_init", "n_quantiles",
                     "features_extractor_kwargs"):
            kwargs[key] = _literal(value, key, path)
        else:
            raise UserError(f"{path}: policy setting {key}={str(value)[:60]} is not one this loader rebuilds; "
                            f"{TRUST_HINT}")
    extractor_kwargs = kwargs.get("features_extractor_kwargs") or {}
    if not isinstance(extractor_kwargs, dict) or set(extractor_kwargs) - {"features_dim", "normalized_image"}:
        raise UserError(f"{path}: features extractor settings {extractor_kwargs} are not ones this loader rebuilds; "
                        f"{TRUST_HINT}")
    return kwargs


def _policy_class(entry: Any, path: Path) -> tuple[str, type]:
    fields = _readable(entry)
    module = fields.get("__module__", "?")
    match = re.match(r"<function (\w+)\.__init__", str(fields.get("__init__", "")))
    name = match.group(1) if match else "?"
    if (module, name) not in ALLOWED_POLICIES:
        supported = ", ".join(f"{m}.{n}" for m, n in ALLOWED_POLICIES)
        raise UserError(f"{path}: policy class {module}.{name} is not one this loader rebuilds (supported: "
                        f"{supported}); {TRUST_HINT}")
    kind, target = ALLOWED_POLICIES[(module, name)]
    module_name, class_name = target.split(":")
    return kind, getattr(__import__(module_name, fromlist=[class_name]), class_name)


def _spaces(data: dict, path: Path) -> tuple[tuple[int, ...], int | None]:
    obs, act = _readable(data.get("observation_space")), _readable(data.get("action_space"))
    shape = tuple(_literal(obs.get("_shape", "()"), "observation_space", path) or ())
    n = act.get("n")
    return shape, (int(n) if n is not None else None)


def read_safely(path: Path) -> tuple[nn.Module, str, tuple[int, ...], int | None, bool]:
    """(policy, kind, observation shape, action count, normalize_images) without unpickling; the policy holds the
    checkpoint's tensors, every one of them."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
            policy_bytes = archive.read("policy.pth")
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path} as a stable-baselines3 checkpoint ({type(exc).__name__}: {exc}); "
                        "the file is damaged or incomplete: download or save it again") from None
    shape, n = _spaces(data, path)
    check_spaces(path, shape, n)
    kind, policy_class = _policy_class(data.get("policy_class"), path)
    kwargs = _policy_kwargs(data.get("policy_kwargs"), path)
    import gymnasium as gym
    import numpy as np

    try:
        policy = policy_class(observation_space=gym.spaces.Box(0, 255, shape, np.uint8),
                              action_space=gym.spaces.Discrete(n), lr_schedule=lambda _: 0.0, **kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise UserError(f"{path}: cannot rebuild {policy_class.__name__} from its settings ({exc}); {TRUST_HINT}") from None
    try:
        state = torch.load(io.BytesIO(policy_bytes), map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses anything that is not plain tensors and containers
        raise UserError(f"{path}: policy.pth is not a plain state dict ({type(exc).__name__}); {TRUST_HINT}") from None
    load_state_strictly(policy, state, str(path))
    return policy, kind, shape, n, bool(kwargs.get("normalize_images", True))


def read_trusting(path: Path) -> tuple[nn.Module, str, tuple[int, ...], int | None, bool]:
    """The same, through SB3's own loader: unpickles (runs) what the file stores. Only for files the user trusts."""
    from stable_baselines3.common.save_util import load_from_zip_file

    try:
        data, params, _ = load_from_zip_file(path, device="cpu", print_system_info=False)
    except Exception as exc:  # corrupt archive, missing members, unpickling failure
        raise UserError(f"cannot read {path} as a stable-baselines3 checkpoint ({type(exc).__name__}: {exc})") from None
    if data is None or "policy_class" not in data or "policy" not in params:
        raise UserError(f"{path} is not a stable-baselines3 model checkpoint (no policy inside)")
    obs_space, act_space = data.get("observation_space"), data.get("action_space")
    shape, n = tuple(getattr(obs_space, "shape", ()) or ()), getattr(act_space, "n", None)
    check_spaces(path, shape, n)
    try:
        policy = data["policy_class"](observation_space=obs_space, action_space=act_space,
                                      lr_schedule=lambda _: 0.0, **dict(data.get("policy_kwargs") or {}))
    except Exception as exc:  # whatever the file's pickles built, it did not build a policy
        raise UserError(f"{path}: the policy stored in the file cannot be built ({type(exc).__name__}: {exc})") from None
    load_state_strictly(policy, params["policy"], str(path))
    kind = _kind_of(policy)
    return policy, kind, shape, int(n), bool(getattr(policy, "normalize_images", True))


def _kind_of(policy: nn.Module) -> str:
    from stable_baselines3.common.policies import ActorCriticPolicy

    if isinstance(policy, ActorCriticPolicy):
        return "actor_critic"
    if hasattr(policy, "quantile_net"):
        return "qrdqn"
    if hasattr(policy, "q_net"):
        return "dqn"
    raise UserError(f"unsupported policy type {type(policy).__name__}; use an A2C, PPO, DQN or QR-DQN checkpoint")


def check_spaces(path: Path, shape: tuple[int, ...], n: int | None) -> None:
    """Refuse policies that are not for 4 stacked 84x84 Atari frames and a discrete action set."""
    if shape != atari.OBS_SHAPE:
        raise UserError(f"{path} expects observations of shape {shape}, not Atari frame stacks {atari.OBS_SHAPE}; "
                        "it is not an Atari policy with 4 stacked 84x84 frames")
    if n is None:
        raise UserError(f"{path} has no discrete action space; Atari teachers choose among discrete actions")


def load_sb3(path: Path, trust: bool = False) -> tuple[nn.Module, str, str, int, float]:
    """(logits or Q network, kind, outputs, action count, input scale) from an SB3 zip."""
    policy, kind, _, n, normalize = (read_trusting if trust else read_safely)(path)
    policy.eval()
    head, outputs = HEADS[kind]
    # the network receives inputs in [0, 1], as SB3's preprocessing would give it; 255x for normalize_images=False
    return head(policy), kind, outputs, n, 1.0 if normalize else 255.0
