"""Turn a stable-baselines3 checkpoint into a :class:`Teacher` (DESIGN.md section 3).

A teacher maps scaled observations ``float32[B, 4, 84, 84]`` in [0, 1] to action logits
``[B, A]``, differentiably in its input. Actor-critic checkpoints (A2C, PPO) give the logits
of their action distribution; value-based ones (DQN, QR-DQN) give ``Q / temperature``.

Security: loading a ``.zip`` unpickles the policy class stored in it (cloudpickle), which can
run arbitrary code. Only load checkpoints you trust; the toolkit loads nothing you did not name
except the teachers shipped in ``teachers/checkpoints``.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import torch
from torch import nn

from distill.environment import atari
from distill.environment.errors import UserError

SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"
META_NAME = "sobolev_distill.json"  # extra member we add to .zip files we write; SB3 ignores it
DEFAULT_TEMPERATURE = 0.01  # Rusu et al. (2016), policy distillation from DQN


def file_sha256(path: str | Path) -> str:
    """Content hash that identifies a teacher in datasets and runs."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_teacher_path(game: str) -> Path:
    """Path of the teacher shipped for ``game``; a clear error if the project ships none."""
    name = atari.canonical_game(game)
    found = sorted(SHIPPED_DIR.glob(f"{name.lower()}_*.zip"))  # <game>_<algo>.zip, one per game
    if not found:
        shipped = sorted(p.stem for p in SHIPPED_DIR.glob("*.zip"))
        raise UserError(f"no shipped teacher for {name} (shipped: {', '.join(shipped) or 'none'}); "
                        f"train one with `distill-teacher --game {name}` and pass --teacher PATH")
    return found[0]


def write_meta(zip_path: str | Path, meta: dict) -> None:
    """Store the game and provenance inside a checkpoint so the wrong game is caught on load."""
    with zipfile.ZipFile(zip_path, "a") as archive:
        if META_NAME in archive.namelist():
            raise UserError(f"{zip_path} already carries {META_NAME}")
        archive.writestr(META_NAME, json.dumps(meta, indent=2))


def read_meta(zip_path: str | Path) -> dict:
    """The metadata written by :func:`write_meta`, or ``{}`` for checkpoints made elsewhere."""
    with zipfile.ZipFile(zip_path) as archive:
        if META_NAME not in archive.namelist():
            return {}
        return json.loads(archive.read(META_NAME))


class Teacher(nn.Module):
    """Scaled observations -> action logits, with the game, action count and file hash it came from."""

    def __init__(self, policy: nn.Module, kind: str, game: str, n_actions: int, sha256: str, path: str,
                 temperature: float = DEFAULT_TEMPERATURE, scale_input: float = 1.0):
        super().__init__()
        self.policy = policy
        self.kind = kind  # "actor_critic" | "dqn" | "qrdqn"
        self.game = game
        self.n_actions = n_actions
        self.sha256 = sha256
        self.path = path
        self.temperature = temperature
        self.scale_input = scale_input  # 255 when the policy was trained without image normalisation

    def forward(self, obs_scaled: torch.Tensor) -> torch.Tensor:
        x = obs_scaled * self.scale_input if self.scale_input != 1.0 else obs_scaled
        policy = self.policy
        if self.kind == "actor_critic":
            extractor = policy.features_extractor if policy.share_features_extractor else policy.pi_features_extractor
            return policy.action_net(policy.mlp_extractor.forward_actor(extractor(x)))
        if self.kind == "dqn":
            q_net = policy.q_net
            return q_net.q_net(q_net.features_extractor(x)) / self.temperature
        net = policy.quantile_net
        quantiles = net.quantile_net(net.features_extractor(x)).view(-1, net.n_quantiles, self.n_actions)
        return quantiles.mean(dim=1) / self.temperature

    def describe(self) -> str:
        return f"{self.kind} teacher for {self.game} ({self.n_actions} actions, sha256 {self.sha256[:12]}) from {self.path}"


def _policy_kind(policy: nn.Module) -> str:
    from stable_baselines3.common.policies import ActorCriticPolicy

    if isinstance(policy, ActorCriticPolicy):
        return "actor_critic"
    if hasattr(policy, "quantile_net"):
        return "qrdqn"
    if hasattr(policy, "q_net"):
        return "dqn"
    raise UserError(f"unsupported policy type {type(policy).__name__}; use an A2C, PPO, DQN or QR-DQN checkpoint")


def resolve_teacher_path(spec: str | Path | None, game: str) -> Path:
    """``None`` or a game name -> the shipped teacher; anything else is a path that must exist."""
    if spec is None:
        return shipped_teacher_path(game)
    text = str(spec)
    if not text.endswith(".zip") and "/" not in text and not Path(text).exists():
        return shipped_teacher_path(text)
    path = Path(text)
    if not path.is_file():
        raise UserError(f"teacher checkpoint {path} not found; pass an existing stable-baselines3 .zip "
                        "or a game name for a shipped teacher")
    return path


def load_teacher(spec: str | Path | None, game: str | None = None, temperature: float = DEFAULT_TEMPERATURE,
                 device: str | torch.device = "cpu") -> Teacher:
    """Load a teacher by game name (shipped) or by path, refusing one that does not fit ``game``.

    ``game`` defaults to the game recorded in the checkpoint (or named by ``spec``).
    """
    from stable_baselines3.common.save_util import load_from_zip_file

    if game is None and spec is not None and not str(spec).endswith(".zip") and "/" not in str(spec):
        game = str(spec)
    path = resolve_teacher_path(spec, game or "")
    meta = read_meta(path) if zipfile.is_zipfile(path) else None
    if meta is None:
        raise UserError(f"{path} is not a stable-baselines3 .zip checkpoint (not a zip archive)")
    stored_game = meta.get("game")
    if game is None:
        if stored_game is None:
            raise UserError(f"{path} does not say which game it plays; pass --game")
        game = stored_game
    game = atari.canonical_game(game)
    if stored_game is not None and atari.canonical_game(stored_game) != game:
        raise UserError(f"teacher {path} was trained on {stored_game}, not {game}; pass a teacher for {game} "
                        f"or --game {stored_game}")
    if temperature <= 0:
        raise UserError(f"--temperature must be positive, got {temperature}")
    try:
        data, params, _ = load_from_zip_file(path, device=device, print_system_info=False)
    except Exception as exc:  # corrupt archive, missing members, unpickling failure
        raise UserError(f"cannot read {path} as a stable-baselines3 checkpoint ({type(exc).__name__}: {exc})") from None
    if data is None or "policy_class" not in data or "policy" not in params:
        raise UserError(f"{path} is not a stable-baselines3 model checkpoint (no policy inside)")
    obs_space, act_space = data.get("observation_space"), data.get("action_space")
    shape = tuple(getattr(obs_space, "shape", ()) or ())
    if shape not in (atari.OBS_SHAPE, atari.OBS_SHAPE[1:] + atari.OBS_SHAPE[:1]):
        raise UserError(f"{path} expects observations of shape {shape}, not Atari frame stacks {atari.OBS_SHAPE}; "
                        "it is not an Atari policy with 4 stacked 84x84 frames")
    expected = atari.n_actions(game)
    got = getattr(act_space, "n", None)
    if got != expected:
        raise UserError(f"teacher {path} has {got} actions but {game} has {expected}; it was trained on another "
                        "game: pass a teacher for this game")
    kwargs = dict(data.get("policy_kwargs") or {})
    policy = data["policy_class"](observation_space=obs_space, action_space=act_space, lr_schedule=lambda _: 0.0,
                                  **kwargs)
    policy.load_state_dict(params["policy"], strict=False)
    policy.to(device).eval()
    kind = _policy_kind(policy)
    scale = 1.0 if getattr(policy, "normalize_images", True) else 255.0
    teacher = Teacher(policy, kind, game, expected, file_sha256(path), str(path), temperature, scale)
    teacher.eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher.to(device)
