"""Lives counts: stored by new recordings, recovered exactly by replay for old ones, and used to weigh training."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from distill.environment.errors import UserError
from distill.recording.lives import before_life_loss, life_losses, read_lives, replay_lives, write_lives
from distill.recording.schema import seal_attributes
from distill.recording.writer import RecordConfig, record
from distill.training.config import TrainConfig
from distill.training.loop import train

from script_helpers import script_module
from test_recording import TinyTeacher


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A recording of short epsilon-random Breakout games, with the lives it stored while playing (an odd number of
    states: the last step plays one of the two games only)."""
    path = tmp_path_factory.mktemp("lives") / "breakout.h5"
    record(RecordConfig(game="Breakout", states=799, envs=2, seed=0, epsilon=0.5, codec="lzf"), TinyTeacher(), path,
           progress=False)
    return path


def _without_lives(src, dst):
    """A copy of a recording as made before recordings stored lives."""
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        del f["lives"]
    return dst


def test_marks_the_window_before_each_lost_life_within_interleaved_episodes():
    # two games interleaved row by row, as a recording with two envs stores them
    lives_a = [5, 5, 4, 4, 4, 3]  # loses lives at its steps 2 and 5
    lives_b = [2, 2, 2, 1, 5, 5]  # steps 0-3: one game (loses at 3), then a new game (5 is no loss)
    lives = np.array([x for pair in zip(lives_a, lives_b) for x in pair])
    episode = np.array([e for pair in zip([0] * 6, [1] * 4 + [2] * 2) for e in pair])
    lost = life_losses(lives, episode)
    np.testing.assert_array_equal(lost[0::2], [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(lost[1::2], [0, 0, 0, 1, 0, 0])
    marked = before_life_loss(lives, episode, window=2)
    np.testing.assert_array_equal(marked[0::2], [0, 1, 1, 0, 1, 1])
    np.testing.assert_array_equal(marked[1::2], [0, 0, 1, 1, 0, 0])  # the window never reaches into another game
    wide = before_life_loss(lives, episode, window=10)
    np.testing.assert_array_equal(wide[1::2], [1, 1, 1, 1, 0, 0])  # clipped at the game's first state
    with pytest.raises(UserError, match="--life-loss-window must be at least 1"):
        before_life_loss(lives, episode, window=0)


def test_recordings_store_lives_that_fall_within_each_game(recording):
    with h5py.File(recording, "r") as f:
        lives, episode, complete = f["lives"][:], f["episode"][:], f["episodes/complete"][:]
    assert lives.shape == (799,) and lives.max() == 5  # Breakout starts with 5 lives
    for e in np.unique(episode):
        game = lives[episode == e].astype(int)
        assert (np.diff(game) <= 0).all()  # Breakout gives no lives back
        if complete[e]:
            assert game[-1] == 0  # a finished game ended by losing its last life
    assert complete.any() and life_losses(lives, episode).sum() >= 5


def test_replay_recovers_the_stored_lives_frame_for_frame(recording, tmp_path, capsys):
    from distill.recording.schema import summary

    old = _without_lives(recording, tmp_path / "old.h5")
    assert summary(recording)["lives_stored"] and not summary(old)["lives_stored"]  # what distill-inspect shows
    with pytest.raises(UserError, match="distill-add-lives"):
        read_lives(old)
    np.testing.assert_array_equal(replay_lives(old, progress=False), read_lives(recording))

    from distill.cli.add_lives import main

    assert main([str(old)]) == 0
    assert "all frames reproduced" in capsys.readouterr().out
    np.testing.assert_array_equal(read_lives(old), read_lives(recording))
    assert summary(old)["lives_stored"]
    assert main([str(old)]) == 0 and "already stores" in capsys.readouterr().out
    with pytest.raises(UserError, match="already stores lives"):
        write_lives(old, read_lives(old))


def test_replay_refuses_recordings_it_cannot_reproduce(recording, tmp_path, capsys):
    changed = _without_lives(recording, tmp_path / "changed.h5")
    with h5py.File(changed, "a") as f:
        # other actions from row 100 on (NOOP <-> LEFT, FIRE <-> RIGHT): the paddle moves otherwise, the games diverge
        f["actions"][100:] = 3 - f["actions"][100:]
    before = changed.read_bytes()
    from distill.cli.add_lives import main

    with pytest.raises(SystemExit) as exc:
        main([str(changed)])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the replay's progress bar
    assert exc.value.code == 2 and last.startswith("error: ") and "does not reproduce state" in last
    assert changed.read_bytes() == before  # nothing written

    resumed = _without_lives(recording, tmp_path / "resumed.h5")
    with h5py.File(resumed, "a") as f:
        f.attrs["resumes"] = 1
        seal_attributes(f)  # as the writer does after every change of the attributes
    with pytest.raises(UserError, match="was resumed"):
        replay_lives(resumed, progress=False)


def cfg(recording, **kw) -> TrainConfig:
    base = dict(dataset=str(recording), game="Breakout", fraction=0.5, steps=40, batch_size=16, eval_every=20,
                test_cap=64, alpha=0.0)
    return TrainConfig(**{**base, **kw})


def test_life_loss_weight_draws_those_states_more_often(recording, tmp_path, monkeypatch):
    drawn = []
    real_multinomial = torch.multinomial

    def spy(weights, n, **kw):
        idx = real_multinomial(weights, n, **kw)
        drawn.append((weights.clone(), idx.clone()))
        return idx

    monkeypatch.setattr(torch, "multinomial", spy)
    info = train(cfg(recording, life_loss_weight=8.0, steps=200), tmp_path / "run", torch.device("cpu"), progress=False)
    assert info == json.loads((tmp_path / "run" / "metrics.json").read_text())  # the final metrics, as written
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["life_loss_weight"] == 8.0
    weights = drawn[0][0]
    marked = weights == 8.0
    assert config["train_states_before_life_loss"] == int(marked.sum()) > 0
    expected = 8.0 * marked.sum().item() / weights.sum().item()
    assert config["share_of_draws_before_life_loss"] == pytest.approx(expected)
    share = np.mean([marked[idx].float().mean().item() for _, idx in drawn])  # 200 steps x 16 states
    assert share == pytest.approx(expected, abs=0.05)
    assert share > 2 * marked.float().mean().item()  # far above the uniform share


def test_life_loss_weight_needs_lives_and_resumes_only_with_the_same_weight(recording, tmp_path):
    old = _without_lives(recording, tmp_path / "old.h5")
    with pytest.raises(UserError, match="distill-add-lives"):
        train(cfg(old, life_loss_weight=4.0), tmp_path / "run", torch.device("cpu"), progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="--life-loss-weight must be positive"):
        train(cfg(recording, life_loss_weight=0.0), tmp_path / "run", torch.device("cpu"), progress=False)
    train(cfg(old), tmp_path / "uniform", torch.device("cpu"), progress=False)  # the default needs no lives
    with pytest.raises(UserError, match="other settings \\(life_loss_weight\\)"):
        train(cfg(old, life_loss_weight=4.0), tmp_path / "uniform", torch.device("cpu"), resume=True, progress=False)


def test_heldout_split_by_life_loss_reports_both_parts_of_the_test_states(recording, tmp_path, capsys):
    from distill.training.data import split_by_episodes

    script = script_module("heldout_by_life_loss")

    run = tmp_path / "run"
    train(cfg(recording, steps=20), run, torch.device("cpu"), progress=False)
    out = tmp_path / "split.json"
    assert script.main([str(run), "--window", "4", "--json", str(out), "--device", "cpu"]) == 0
    (report,) = json.loads(out.read_text())
    with h5py.File(recording, "r") as f:
        episode = f["episode"][:]
    test_rows = split_by_episodes(episode, 0.5, 0).test_rows
    marked = before_life_loss(read_lives(recording), episode, 4)[test_rows]
    b, e, a = report["before_lost_life"], report["elsewhere"], report["all"]
    assert b["states"] == marked.sum() > 0 and e["states"] == (~marked).sum() and a["states"] == len(test_rows)
    assert a["action_error"] == pytest.approx((b["action_error"] * b["states"] + e["action_error"] * e["states"])
                                              / a["states"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert a["kl"] == pytest.approx(metrics["test_kl"], rel=1e-4)  # the same held-out states training reported on
    assert "| 1 |" in capsys.readouterr().out


def test_offline_vs_play_ranks_held_out_measures_against_game_scores(recording, tmp_path, capsys):
    from scipy import stats

    from diagnostics_common import life_loss_split

    script = script_module("offline_vs_play")
    files, kls = [], []
    for seed, steps in enumerate((2, 10, 40)):
        run = tmp_path / f"run{seed}"
        train(cfg(recording, steps=steps, seed=seed), run, torch.device("cpu"), progress=False)
        kls.append(life_loss_split(run, 16, torch.device("cpu"))["before_lost_life"]["kl"])
        # games as distill-eval --json writes them; a run's games may come in two files
        for part, returns in enumerate(([10.0 * seed, 2.0], [4.0 + seed])):
            path = tmp_path / f"games{seed}-{part}.json"
            path.write_text(json.dumps({"run": str(run), "modes": {"sample": {"returns": returns},
                                                                    "greedy": {"returns": [float(steps)]}}}))
            files.append(str(path))
    out = tmp_path / "out.json"
    assert script.main(files + ["--device", "cpu", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["games"]["sample"] for r in report["runs"]] == [3, 3, 3]
    assert report["runs"][2]["mean_score"]["sample"] == pytest.approx((20.0 + 2.0 + 6.0) / 3)
    expected = stats.spearmanr(kls, [2.0, 10.0, 40.0]).statistic
    assert report["spearman"]["KL, before a lost life"]["greedy"]["rho"] == pytest.approx(expected)
    assert "Spearman's rho" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text(json.dumps({"modes": {}}))
    for argv, message in ((files[:4], "at least 3 runs"), (files + [str(tmp_path / "bad.json")], "names no run")):
        with pytest.raises(SystemExit) as exc:
            script.main(argv)
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and message in err and len(err.splitlines()) == 1
