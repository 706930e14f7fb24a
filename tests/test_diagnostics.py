"""Held-out metrics per episode, the validation/test division, and choosing alpha on validation episodes only."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from distill.training.data import recording_episodes, split_by_episodes
from distill.environment.errors import UserError
from distill.evaluation.heldout import episode_sums
from distill.training.data import heldout_blocks
from distill.training.metrics import per_state_metrics
from distill.training.metrics import evaluate_states
from distill.training.runs import load_student
from distill.training.loop import train

from script_helpers import script_module
from diagnostics_common import divide_heldout, finished_runs  # after script_helpers: it puts them on the path
from test_train import cfg, recording  # noqa: F401  (recording is a fixture)


def test_per_state_metrics_average_to_the_reported_test_metrics(recording, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    train(cfg(recording, alpha=1.0, steps=10), run, torch.device("cpu"), progress=False)
    student, info = load_student(run)
    episode_of_state, _ = recording_episodes(recording)
    rows = split_by_episodes(episode_of_state, 0.5, 0).test_rows
    per_state = per_state_metrics(student, heldout_blocks(recording, rows, torch.device("cpu"), block=7))
    errors, kls = per_state["error"], per_state["kl"]
    reported = evaluate_states(student, recording, rows, torch.device("cpu"))
    assert errors.mean() == pytest.approx(reported["test_action_error"])
    assert kls.mean() == pytest.approx(reported["test_kl"], rel=1e-5)
    assert (kls >= -1e-6).all() and set(np.unique(errors)) <= {0.0, 1.0}
    sums = episode_sums(student, recording, rows, episode_of_state, torch.device("cpu"))
    assert sums.states.sum() == len(rows)
    whole = sums.metrics(sums.episodes)
    assert whole["test_kl"] == pytest.approx(reported["test_kl"], rel=1e-5)
    one = sums.episodes[:1]  # one episode's metrics are the mean over its own states
    mask = episode_of_state[rows] == one[0]
    assert sums.metrics(one)["test_action_error"] == pytest.approx(errors[mask].mean())
    assert sums.metrics(one)["test_kl"] == pytest.approx(kls[mask].mean())


def test_divide_heldout_keeps_whole_episodes_and_the_share():
    episodes = np.arange(10, 30)
    states = np.full(20, 50)
    val, test = divide_heldout(episodes, states, 0.5, seed=3)
    assert len(np.intersect1d(val, test)) == 0
    assert sorted(np.concatenate([val, test]).tolist()) == episodes.tolist()
    assert len(val) == 10  # equal episodes: half of the states is half of the episodes
    again, _ = divide_heldout(episodes, states, 0.5, seed=3)
    other, _ = divide_heldout(episodes, states, 0.5, seed=4)
    assert again.tolist() == val.tolist() and other.tolist() != val.tolist()
    val, test = divide_heldout(np.array([1, 2]), np.array([900, 5]), 0.9, seed=0)
    assert len(val) == 1 and len(test) == 1  # never every episode in validation
    for share in (0.0, 1.0):
        with pytest.raises(UserError, match="strictly between 0 and 1"):
            divide_heldout(episodes, states, share)
    with pytest.raises(UserError, match="single held-out episode"):
        divide_heldout(np.array([4]), np.array([100]), 0.5)


def test_select_alpha_chooses_on_validation_and_reports_on_test(recording, tmp_path, capsys):  # noqa: F811
    grid = tmp_path / "grid"
    for alpha in (0.0, 0.3, 1.0):
        for seed in (0, 1):
            train(cfg(recording, alpha=alpha, seed=seed, steps=12, fraction=0.3), grid / "runs" / f"a{alpha:g}-s{seed}",
                  torch.device("cpu"), progress=False)
    module = script_module("select_alpha")
    out = tmp_path / "out"
    assert module.main(["--dataset", str(recording), "--runs", str(grid), "--out", str(out)]) == 0
    result = json.loads((out / "select_alpha-v0.json").read_text())
    (row,) = result["fractions"]
    assert row["fraction"] == 0.3 and row["seeds"] == [0, 1] and row["alphas"] == ["0", "0.3", "1"]
    val_kl = {a: row["per_alpha"][a]["val_kl"][0] for a in ("0.3", "1")}
    assert row["chosen_alpha"] == min(val_kl, key=val_kl.get)  # chosen on validation, never on test
    episode_of_state, _ = recording_episodes(recording)
    heldout = split_by_episodes(episode_of_state, 0.3, 0).test_episodes
    assert len(np.intersect1d(row["val_episodes"], row["test_episodes"])) == 0
    assert sorted(row["val_episodes"] + row["test_episodes"]) == heldout.tolist()
    # the test figures are the runs' metrics on the test episodes alone
    student, _ = load_student(grid / "runs" / "a0-s1")
    test_rows = np.flatnonzero(np.isin(episode_of_state, row["test_episodes"]))
    direct = evaluate_states(student, recording, test_rows, torch.device("cpu"))
    assert row["per_alpha"]["0"]["per_seed_test"][1][1] == pytest.approx(direct["test_kl"], rel=1e-5)
    assert "(chosen)" in (out / "select_alpha-v0.md").read_text()
    cached = sorted(p.name for p in (out / "cache").iterdir())
    assert len(cached) == 6
    assert module.main(["--dataset", str(recording), "--runs", str(grid), "--out", str(out), "--val-seed", "1"]) == 0
    assert sorted(p.name for p in (out / "cache").iterdir()) == cached  # another division evaluates nothing again
    assert (out / "select_alpha-v1.md").exists() and (out / "select_alpha-v0.md").exists()  # side by side
    # a folder of run folders (no runs/ level) or the run folders themselves are read the same way
    runs = sorted(str(p) for p in (grid / "runs").iterdir())
    for given in ([str(grid / "runs")], runs):
        assert module.main(["--dataset", str(recording), "--runs", *given, "--out", str(out)]) == 0
        again = json.loads((out / "select_alpha-v0.json").read_text())
        assert again["fractions"][0]["chosen_alpha"] == row["chosen_alpha"]


def test_select_alpha_weighs_a_falling_alpha_as_a_candidate_of_its_own(recording, tmp_path, capsys):  # noqa: F811
    grid = tmp_path / "grid"
    for name, kw in (("a0", dict(alpha=0.0)), ("a1", dict(alpha=1.0)), ("a1-linear", dict(alpha=1.0, alpha_schedule="linear")),
                     ("a1-linear-half", dict(alpha=1.0, alpha_schedule="linear", alpha_until=0.5))):
        train(cfg(recording, steps=8, fraction=0.3, **kw), grid / "runs" / name, torch.device("cpu"), progress=False)
    module = script_module("select_alpha")
    out = tmp_path / "out"
    assert module.main(["--dataset", str(recording), "--runs", str(grid), "--out", str(out)]) == 0
    (row,) = json.loads((out / "select_alpha-v0.json").read_text())["fractions"]
    assert row["alphas"] == ["0", "1", "1 linear", "1 linear until 0.5"] and "skip" not in capsys.readouterr().err
    val_kl = {a: row["per_alpha"][a]["val_kl"][0] for a in ("1", "1 linear", "1 linear until 0.5")}
    assert row["chosen_alpha"] == min(val_kl, key=val_kl.get)
    assert "| 0.3 | 1 linear" in (out / "select_alpha-v0.md").read_text()


def test_select_alpha_refuses_bad_input_in_one_line(recording, tmp_path, capsys, caplog):  # noqa: F811
    module = script_module("select_alpha")
    with pytest.raises(SystemExit) as exc:
        module.main(["--dataset", str(recording), "--runs", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --runs") and "does not exist" in err and "\n" not in err
    run = tmp_path / "grid" / "runs" / "a0-s0"
    train(cfg(recording, alpha=0.0, steps=4), run, torch.device("cpu"), progress=False)
    unfinished = run.parent / "a1-s0"  # an interrupted run: settings, no final metrics
    unfinished.mkdir()
    (unfinished / "config.json").write_text((run / "config.json").read_text())
    with caplog.at_level(logging.WARNING, logger="distill.heldout"):
        assert finished_runs([tmp_path / "grid"]) == [run]
    assert f"skip {unfinished}" in caplog.text
    with pytest.raises(SystemExit):  # alpha 0 alone: nothing to choose
        module.main(["--dataset", str(recording), "--runs", str(tmp_path / "grid"), "--out", str(tmp_path / "o")])
    assert "no fraction has KL-only and Sobolev runs" in capsys.readouterr().err


def test_compare_by_episode_pairs_seeds_and_counts_episodes(recording, tmp_path, capsys):  # noqa: F811
    runs = {}
    for alpha in (0.0, 1.0):
        for seed in (0, 1):
            runs[alpha, seed] = tmp_path / f"a{alpha:g}-s{seed}"
            train(cfg(recording, alpha=alpha, seed=seed, steps=8, fraction=0.3), runs[alpha, seed],
                  torch.device("cpu"), progress=False)
    module = script_module("compare_by_episode")
    out = tmp_path / "out"
    episode_of_state, _ = recording_episodes(recording)
    heldout = split_by_episodes(episode_of_state, 0.3, 0).test_episodes
    left_out = int(heldout[0])
    assert module.main(["--dataset", str(recording), "--a", str(runs[0.0, 0]), str(runs[0.0, 1]),
                        "--b", str(runs[1.0, 1]), str(runs[1.0, 0]),  # any order: paired by seed
                        "--exclude-episodes", str(left_out), "--out", str(out)]) == 0
    report = json.loads((out / "compare.json").read_text())
    assert [p["seed"] for p in report["pairs"]] == [0, 1]
    pair = report["pairs"][1]
    assert pair["run_a"].endswith("a0-s1") and pair["run_b"].endswith("a1-s1") and pair["episodes"] == len(heldout)
    sums = {m: episode_sums(load_student(runs[m, 1])[0], recording, split_by_episodes(episode_of_state, 0.3, 0).test_rows,
                            episode_of_state, torch.device("cpu")) for m in (0.0, 1.0)}
    kl = {m: s.kl / s.states for m, s in sums.items()}
    assert pair["b_lower_kl"] == int((kl[1.0] < kl[0.0]).sum())
    assert pair["b"]["test_kl"] == pytest.approx(sums[1.0].metrics(sums[1.0].episodes)["test_kl"], rel=1e-6)
    kept = heldout[heldout != left_out]
    assert pair["excluded"] == [left_out]
    assert pair["a_without_excluded"]["test_kl"] == pytest.approx(sums[0.0].metrics(kept)["test_kl"], rel=1e-6)
    # runs of another split hold out other episodes: refused, in one line
    other = tmp_path / "other-split"
    train(cfg(recording, alpha=1.0, seed=0, steps=4, fraction=0.6), other, torch.device("cpu"), progress=False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        module.main(["--dataset", str(recording), "--a", str(runs[0.0, 0]), "--b", str(other), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "different episodes" in err and "\n" not in err
