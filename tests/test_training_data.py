"""Training data: splits by whole episodes, and which recording a training picks."""

from __future__ import annotations


import numpy as np
import pytest

from distill.training.data import split_by_episodes
from distill.environment.errors import UserError



def test_split_keeps_whole_episodes_and_honours_the_fraction():
    episode = np.repeat(np.arange(50), np.random.default_rng(0).integers(5, 40, 50))
    rng = np.random.default_rng(1)
    episode = episode[np.argsort(rng.random(len(episode)), kind="stable")]  # interleaved, as with parallel games
    for fraction in (0.05, 0.1, 0.5, 0.9):
        split = split_by_episodes(episode, fraction, seed=3)
        assert not set(episode[split.train_rows]) & set(episode[split.test_rows])
        assert len(split.train_rows) + len(split.test_rows) == len(episode)
        share = len(split.train_rows) / len(episode)
        assert fraction <= share < fraction + 40 / len(episode) + 1e-9  # at most one episode over
    a, b = split_by_episodes(episode, 0.3, seed=3), split_by_episodes(episode, 0.3, seed=3)
    np.testing.assert_array_equal(a.train_rows, b.train_rows)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_fraction_outside_open_interval_is_refused(fraction):
    with pytest.raises(UserError, match="strictly between 0 and 1"):
        split_by_episodes(np.array([0, 0, 1, 1]), fraction)


def test_fraction_leaving_no_test_episode_is_refused():
    with pytest.raises(UserError, match="leaves no test episode"):
        split_by_episodes(np.array([0, 0, 0, 0, 1]), 0.9)




def test_latest_recording_is_chosen_by_its_own_game_and_finish_time(recording, tmp_path):
    import os
    import shutil

    import h5py

    from distill.recording.schema import find_latest_recording, seal_attributes

    def copy(name: str, finished: str, complete: bool = True):
        path = tmp_path / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(recording, path)
        with h5py.File(path, "a") as f:
            f.attrs["finished"] = finished
            f.attrs["complete"] = complete
            seal_attributes(f)  # as the writer does after every change of the attributes
        return path

    newest = copy("mine/any-name.h5", "2026-06-01T00:00:00+00:00")  # any name, any folder under data/
    older = copy("recordings/breakout-a.h5", "2026-01-01T00:00:00+00:00")
    copy("recordings/breakout-partial.h5", "2026-12-01T00:00:00+00:00", complete=False)  # never chosen
    (tmp_path / "data" / "recordings" / "breakout-junk.h5").write_bytes(b"not hdf5")
    os.utime(older, (newest.stat().st_mtime + 100,) * 2)  # touched later, but finished earlier
    assert find_latest_recording("Breakout", tmp_path / "data") == newest
    with pytest.raises(UserError, match="no complete recording of Pong"):
        find_latest_recording("Pong", tmp_path / "data")  # a Breakout recording is never taken for another game
    gradient_free = copy("recordings/breakout-k0.h5", "2026-09-01T00:00:00+00:00")  # newer, but without gradients
    with h5py.File(gradient_free, "a") as f:
        f.attrs["projections"] = 0
        seal_attributes(f)
        del f["proj_dirs"], f["proj_grads"]
    assert find_latest_recording("Breakout", tmp_path / "data") == gradient_free
    assert find_latest_recording("Breakout", tmp_path / "data", needs_gradients=True) == newest
    for path in (newest, older):
        path.unlink()
    with pytest.raises(UserError, match="hold no input gradients .* --teacher Breakout"):
        find_latest_recording("Breakout", tmp_path / "data", needs_gradients=True)
