"""The one place that builds Atari environments (DESIGN.md section 2).

Teacher training, recording and rollout evaluation all call :func:`make_vec_env` so that
every observation in the project is the same thing: ``uint8[4, 84, 84]``, four 84x84
grayscale frames stacked channel-first, produced by stable-baselines3's ``AtariWrapper``
(noop reset up to 30, frame skip 4 with max-pooling, fire on reset where needed).
Episodic life and reward clipping are switched on for teacher training only; evaluation
and recording play whole games and see the real, unclipped score.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import gymnasium as gym
import numpy as np

from distill.environment.errors import UserError

FRAME_STACK = 4
OBS_SHAPE = (FRAME_STACK, 84, 84)

_registered = False
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _exit_with_parent(parent_pid: int) -> None:
    """In a game worker process: have Linux end it when its parent dies.

    SB3's ``SubprocVecEnv`` workers otherwise wait forever on their pipe after a ``kill -9`` of
    the recording or training that started them. No-op outside Linux.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class FireOnLifeLoss(gym.Wrapper):
    """After losing a life (game not over), press FIRE as the training-time reset did.

    During teacher training, episodic life ends an episode at every life loss and SB3's
    ``FireResetEnv`` presses FIRE (then action 2) on the reset that follows. Whole-game
    evaluation has no such resets, so games like Breakout would wait forever for a serve a
    greedy policy never learned to make. Pressing FIRE here reproduces exactly the states the
    teacher saw in training. Only for games whose action 1 is FIRE.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._lives = 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._lives = int(info.get("lives", 0))
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = int(info.get("lives", self._lives))
        if 0 < lives < self._lives and not (terminated or truncated):
            for extra in (1, 2):
                obs, r, terminated, truncated, info = self.env.step(extra)
                reward += r
                if terminated or truncated:
                    break
            lives = int(info.get("lives", lives))
        self._lives = lives
        return obs, reward, terminated, truncated, info


def needs_fire(env: gym.Env) -> bool:
    """Whether a game waits for FIRE to start (as SB3's ``FireResetEnv`` decides)."""
    meanings = env.unwrapped.get_action_meanings()
    return len(meanings) >= 3 and meanings[1] == "FIRE"


def _register() -> None:
    """gymnasium >= 1.0 needs the ALE ids registered explicitly."""
    global _registered
    if not _registered:
        import ale_py

        gym.register_envs(ale_py)
        _registered = True


def available_games() -> list[str]:
    """Short names (``Breakout``) of every game with a ``NoFrameskip-v4`` id."""
    _register()
    suffix = "NoFrameskip-v4"
    return sorted(
        env_id[: -len(suffix)]
        for env_id in gym.envs.registry
        if env_id.endswith(suffix) and "/" not in env_id and "-ram" not in env_id
    )


def canonical_game(name: str) -> str:
    """Accept ``Breakout``, ``breakout`` or ``BreakoutNoFrameskip-v4``; return ``Breakout``."""
    base = name.strip()
    if base.endswith("NoFrameskip-v4"):
        base = base[: -len("NoFrameskip-v4")]
    games = available_games()
    by_lower = {g.lower(): g for g in games}
    key = base.lower().replace("_", "").replace("-", "")
    if key not in by_lower:
        raise UserError(
            f"unknown game {name!r}; run `python -c \"import distill.environment.atari as a; print(a.available_games())\"` "
            "to list valid names (for example Breakout, Pong, SpaceInvaders)"
        )
    return by_lower[key]


def env_id(game: str) -> str:
    """The gymnasium id used for a game, e.g. ``BreakoutNoFrameskip-v4``."""
    return f"{canonical_game(game)}NoFrameskip-v4"


def env_settings(training: bool) -> dict[str, Any]:
    """The wrapper settings, stored in recordings and teacher cards so runs are comparable."""
    return {
        "noop_max": 30,
        "frame_skip": 4,
        "screen_size": 84,
        "frame_stack": FRAME_STACK,
        "terminal_on_life_loss": training,
        "clip_reward": training,
        "fire_on_life_loss": not training,
        "max_frames_per_episode": 108_000,
        "repeat_action_probability": 0.0,
    }


def make_vec_env(
    game: str,
    n_envs: int = 1,
    seed: int | None = 0,
    training: bool = False,
    monitor_dir: str | None = None,
    subprocesses: bool = False,
):
    """Vectorised env yielding ``uint8[n_envs, 4, 84, 84]`` observations.

    ``training=True`` adds episodic life and reward clipping (teacher training only).
    ``subprocesses=True`` steps each game in its own process (SB3's ``SubprocVecEnv``), so that
    ``step_async`` lets the caller work while the games advance.
    Episode statistics in ``info["episode"]`` are whole-game, unclipped scores either way,
    because SB3 puts its ``Monitor`` beneath the Atari wrappers.
    """
    from stable_baselines3.common.atari_wrappers import AtariWrapper
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack, VecTransposeImage

    _register()
    if n_envs < 1:
        raise UserError(f"--envs must be at least 1, got {n_envs}")

    parent_pid = os.getpid()

    def wrap(env: gym.Env) -> gym.Env:
        if os.getpid() != parent_pid:  # running in a SubprocVecEnv worker
            _exit_with_parent(parent_pid)
        env = AtariWrapper(env, terminal_on_life_loss=training, clip_reward=training)
        if not training and needs_fire(env):
            env = FireOnLifeLoss(env)
        return env

    # what SB3's make_atari_env does, plus FireOnLifeLoss outside training
    vec_cls, vec_kwargs = None, None
    if subprocesses and n_envs > 1:
        from stable_baselines3.common.vec_env import SubprocVecEnv

        vec_cls, vec_kwargs = SubprocVecEnv, {"start_method": "fork"}
    venv = sb3_make_vec_env(env_id(game), n_envs=n_envs, seed=seed, monitor_dir=monitor_dir, wrapper_class=wrap,
                            vec_env_cls=vec_cls, vec_env_kwargs=vec_kwargs)
    venv = VecFrameStack(venv, n_stack=FRAME_STACK)
    return VecTransposeImage(venv)


def n_actions(game: str) -> int:
    """Size of the minimal action set of a game."""
    _register()
    env = gym.make(env_id(game))
    try:
        return int(env.action_space.n)
    finally:
        env.close()


def scale_obs(obs: np.ndarray):
    """uint8 observations -> float32 network input in [0, 1] (the input every gradient is taken wrt)."""
    import torch

    tensor = torch.as_tensor(obs)
    return tensor.float().div_(255.0)
