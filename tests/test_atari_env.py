"""The one environment definition: shapes, names, identity with SB3's Atari pipeline, whole games."""

from __future__ import annotations

import numpy as np
import pytest

from distill.environment import atari
from distill.environment.errors import UserError


def sb3_reference(game: str, n_envs: int, seed: int, training: bool):
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    atari._register()
    return VecFrameStack(make_atari_env(f"{game}NoFrameskip-v4", n_envs=n_envs, seed=seed,
                                        wrapper_kwargs={"terminal_on_life_loss": training, "clip_reward": training}),
                         n_stack=4)


def test_game_names_are_accepted_in_three_spellings():
    assert atari.canonical_game("Breakout") == "Breakout"
    assert atari.canonical_game("breakout") == "Breakout"
    assert atari.canonical_game("BreakoutNoFrameskip-v4") == "Breakout"
    assert atari.canonical_game("spaceinvaders") == "SpaceInvaders"
    assert {"Breakout", "Pong", "SpaceInvaders"} <= set(atari.available_games())


def test_unknown_game_is_a_clear_error():
    with pytest.raises(UserError, match="unknown game 'Brekout'.*available_games"):
        atari.canonical_game("Brekout")


def test_observations_are_channel_first_uint8_frame_stacks():
    venv = atari.make_vec_env("Pong", n_envs=2, seed=3)
    obs = venv.reset()
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    obs, rewards, dones, infos = venv.step(np.array([0, 1]))
    assert obs.shape == (2, 4, 84, 84)
    venv.close()


@pytest.mark.parametrize("game,training", [("Breakout", True), ("Pong", False), ("Pong", True)])
def test_identical_to_sb3_make_atari_env_for_same_seed_and_actions(game, training):
    ours = atari.make_vec_env(game, n_envs=2, seed=11, training=training)
    ref = sb3_reference(game, n_envs=2, seed=11, training=training)
    rng = np.random.default_rng(0)
    o1, o2 = ours.reset(), ref.reset()
    np.testing.assert_array_equal(o1, o2.transpose(0, 3, 1, 2))
    for _ in range(150):
        actions = rng.integers(0, ours.action_space.n, size=2)
        o1, r1, d1, _ = ours.step(actions)
        o2, r2, d2, _ = ref.step(actions)
        np.testing.assert_array_equal(o1, o2.transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(d1, d2)
    ours.close()
    ref.close()


def test_training_clips_rewards_and_evaluation_does_not():
    assert atari.env_settings(True)["clip_reward"] and not atari.env_settings(False)["clip_reward"]
    assert atari.env_settings(True)["terminal_on_life_loss"] and not atari.env_settings(False)["terminal_on_life_loss"]


def test_evaluation_plays_whole_breakout_games_without_stalling():
    """A policy that never presses FIRE still finishes its game: lives are served as in training."""
    venv = atari.make_vec_env("Breakout", n_envs=1, seed=0, training=False)
    venv.reset()
    for step in range(10_000):
        _, _, dones, infos = venv.step(np.array([0]))
        if dones[0]:
            break
    assert dones[0], "a NOOP policy should lose all 5 lives quickly"
    assert "episode" in infos[0]  # whole-game statistics from SB3's Monitor
    assert step < 5_000
    venv.close()


def test_subprocess_games_match_in_process_games():
    """Recording steps games in subprocesses; they must be the very same games."""
    a = atari.make_vec_env("Breakout", n_envs=2, seed=5, training=False)
    b = atari.make_vec_env("Breakout", n_envs=2, seed=5, training=False, subprocesses=True)
    np.testing.assert_array_equal(a.reset(), b.reset())
    rng = np.random.default_rng(1)
    for _ in range(60):
        actions = rng.integers(0, 4, size=2)
        b.step_async(actions)
        oa, ra, da, _ = a.step(actions)
        ob, rb, db, _ = b.step_wait()
        np.testing.assert_array_equal(oa, ob)
        np.testing.assert_array_equal(ra, rb)
    a.close()
    b.close()
