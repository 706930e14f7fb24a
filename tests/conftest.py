"""Shared fixtures: tiny stable-baselines3 models trained for a few hundred steps, as a user would."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)  # tiny models on a 2-core CI box: more threads only add contention
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _atari_vec_env(game: str, n_envs: int = 2, seed: int = 0):
    """The zoo's wrappers built directly with SB3 (not through distill.atari): an 'outside' model."""
    import ale_py
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    return VecFrameStack(make_atari_env(f"{game}NoFrameskip-v4", n_envs=n_envs, seed=seed), n_stack=4)


@pytest.fixture(scope="session")
def sb3_models(tmp_path_factory):
    """Paths of tiny A2C (Breakout, Pong), PPO, DQN and QR-DQN Atari checkpoints, and a CartPole PPO."""
    from sb3_contrib import QRDQN
    from stable_baselines3 import A2C, DQN, PPO

    root = tmp_path_factory.mktemp("models")
    paths = {}
    model = A2C("CnnPolicy", _atari_vec_env("Breakout"), n_steps=5, seed=0, device="cpu")
    model.learn(200)
    paths["a2c_breakout"] = root / "a2c_breakout.zip"
    model.save(paths["a2c_breakout"])
    model = A2C("CnnPolicy", _atari_vec_env("Pong"), n_steps=5, seed=0, device="cpu")
    model.learn(100)
    paths["a2c_pong"] = root / "a2c_pong.zip"
    model.save(paths["a2c_pong"])
    model = PPO("CnnPolicy", _atari_vec_env("Breakout"), n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    paths["ppo_breakout"] = root / "ppo_breakout.zip"
    model.save(paths["ppo_breakout"])
    for name, cls in (("dqn", DQN), ("qrdqn", QRDQN)):
        model = cls("CnnPolicy", _atari_vec_env("Breakout", n_envs=1), buffer_size=200, learning_starts=50,
                    train_freq=4, seed=0, device="cpu")
        model.learn(100)
        paths[f"{name}_breakout"] = root / f"{name}_breakout.zip"
        model.save(paths[f"{name}_breakout"])
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(32)
    paths["ppo_cartpole"] = root / "ppo_cartpole.zip"
    model.save(paths["ppo_cartpole"])
    return paths


@pytest.fixture(scope="session")
def recording(tmp_path_factory):
    """A 400-state Breakout recording of a tiny untrained teacher, shared by the training and evaluation tests."""
    from distill.recording.writer import RecordConfig, record
    from test_recording import TinyTeacher

    path = tmp_path_factory.mktemp("rec") / "breakout-test.h5"
    # epsilon-random behaviour makes short, varied games: several episodes in few states. lzf, built into h5py:
    # training does not depend on the codec, and so these tests (CUDA ones included) run where hdf5plugin is missing
    record(RecordConfig(game="Breakout", states=400, envs=4, seed=0, epsilon=0.5, codec="lzf"), TinyTeacher(), path,
           progress=False)
    return path

