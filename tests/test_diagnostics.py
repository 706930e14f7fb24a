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

from script_helpers import one_line_error, script_module
from diagnostics_common import divide_heldout, finished_runs  # after script_helpers: it puts them on the path
from training_helpers import cfg


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


def test_diagnose_script_measures_gradient_match(recording, tmp_path, capsys):
    module = script_module("diagnose_sobolev")
    run = tmp_path / "run"
    train(cfg(recording, alpha=1.0, steps=10), run, torch.device("cpu"), progress=False)
    r = module.diagnose(run, states=16)
    assert -1.0 <= r["cosine"] <= 1.0 and r["relative"] >= 0 and r["norm_ratio"] >= 0
    assert r["param_grad_kl"] > 0 and r["param_grad_sobolev"] > 0 and r["directions"] == "recorded"
    assert module.main([str(run), "--states", "16"]) == 0
    out = capsys.readouterr().out
    assert "| run |" in out and "| recorded |" in out
    assert "not a finished distill-train run" in one_line_error(module.main, [str(tmp_path)], capsys)


def test_action_error_by_margin_splits_the_error_into_bands(recording, tmp_path, capsys):
    module = script_module("action_error_by_margin")
    run = tmp_path / "run"
    train(cfg(recording, alpha=0.0, steps=10), run, torch.device("cpu"), progress=False)
    r = module.margin_report(run, states=64, edges=[0.0, 0.05, 0.2, 1.0], merge=[])
    assert sum(b["share"] for b in r["bands"]) == pytest.approx(1.0)
    # the share-weighted errors of the bands add up to the whole error
    assert sum(b["share"] * b["error"] for b in r["bands"] if b["share"]) == pytest.approx(r["error"])
    everything = ",".join(str(a) for a in range(json.loads((run / "config.json").read_text())["n_actions"]))
    assert module.margin_report(run, 64, [0.0, 1.0], [everything])["merged_error"] == 0.0  # one group: no error
    # the disagreement pairs add up to the error, and none pairs an action with itself
    assert sum(c["share"] for c in r["confusions"]) == pytest.approx(r["error"])
    assert all(c["teacher"] != c["student"] for c in r["confusions"])
    shares = [c["share"] for c in r["confusions"]]
    assert shares == sorted(shares, reverse=True)
    assert module.main([str(run), "--states", "32", "--merge", "0,1", "--confusions", "2"]) == 0
    out = capsys.readouterr().out
    assert "merged error" in out and "Most common disagreements" in out
    assert "--confusions must be at least 0" in one_line_error(module.main, [str(run), "--confusions", "-1"], capsys)
    assert "distinct actions" in one_line_error(module.main, [str(run), "--merge", "0,0"], capsys)  # an action twice
    assert "--edges must rise" in one_line_error(module.main, [str(run), "--edges", "0.5", "0.1"], capsys)


def test_stray_mass_against_hand_computed_values(recording, tmp_path, capsys):
    module = script_module("stray_mass")
    teacher = torch.tensor([[0.9, 0.08, 0.02], [0.5, 0.49, 0.01]])
    student = torch.tensor([[0.7, 0.1, 0.2], [0.5, 0.4, 0.1]])
    s = module.stray_mass_summary(student.log(), teacher.log(), below=0.05)
    assert s["student_stray_mass"] == pytest.approx((0.2 + 0.1) / 2)  # the third action is stray in both states
    assert s["teacher_stray_mass"] == pytest.approx((0.02 + 0.01) / 2)
    assert s["student_entropy"] == pytest.approx(float(-(student * student.log()).sum(1).mean()))
    assert s["kl_teacher_student"] == pytest.approx(float((teacher * (teacher / student).log()).sum(1).mean()))
    assert s["kl_student_teacher"] == pytest.approx(float((student * (student / teacher).log()).sum(1).mean()))
    same = module.stray_mass_summary(teacher.log(), teacher.log(), below=0.05)
    assert same["student_stray_mass"] == same["teacher_stray_mass"] and same["kl_student_teacher"] == pytest.approx(0)

    run = tmp_path / "run"
    train(cfg(recording, alpha=0.0, steps=10, kl="student-teacher"), run, torch.device("cpu"), progress=False)
    out = tmp_path / "stray.json"
    assert module.main([str(run), "--states", "100000", "--json", str(out)]) == 0  # every held-out state
    (report,) = json.loads(out.read_text())
    assert report["kl_direction"] == "student-teacher" and 0 <= report["student_stray_mass"] <= 1
    final = json.loads((run / "metrics.json").read_text())
    assert report["kl_teacher_student"] == pytest.approx(final["test_kl"], rel=1e-4)  # the metric training reports
    assert "| run |" in capsys.readouterr().out
    assert "--below must lie in (0, 1)" in one_line_error(module.main, [str(run), "--below", "1.5"], capsys)
    assert "not a finished distill-train run" in one_line_error(module.main, [str(tmp_path)], capsys)


def test_live_channels_counts_first_layer_channels_that_fire(recording, tmp_path, capsys):
    from distill.training.students import make_student
    from diagnostics_common import live_first_layer_channels

    student = make_student("paper", 4)
    obs = torch.rand(8, 4, 84, 84)
    first = student.features[0]
    with torch.no_grad():
        first.weight.zero_()
        first.bias.fill_(0.1)  # every channel fires everywhere
        assert live_first_layer_channels(student, obs) == 16
        first.bias[[2, 5, 11]] = -0.1  # these three never fire: zero weights, negative bias
        assert live_first_layer_channels(student, obs) == 13
        first.bias[11] = 0.0  # exactly zero after the ReLU is not firing
        assert live_first_layer_channels(student, obs) == 13
        first.weight[5, 0, 0, 0] = 1.0  # fires where input channel 0 at one tap exceeds 0.1: somewhere in 8 frames
        assert live_first_layer_channels(student, obs) == 14
        assert live_first_layer_channels(student, torch.zeros(8, 4, 84, 84)) == 13  # but not on blank frames

    module = script_module("live_channels")
    run = tmp_path / "runs" / "f0.5-a1-s0"
    train(cfg(recording, alpha=1.0, steps=10), run, torch.device("cpu"), progress=False)
    out = tmp_path / "live.json"
    assert module.main([str(tmp_path), "--states", "50", "--json", str(out)]) == 0  # a grid folder: its runs/
    (report,) = json.loads(out.read_text())
    assert report["channels"] == 8 and 0 <= report["live_channels"] <= 8 and report["states"] == 50  # `small`
    assert report["test_kl"] == json.loads((run / "metrics.json").read_text())["test_kl"]
    assert f"| f0.5-a1-s0 | 0.05 | {report['live_channels']} of 8 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        module.main([str(tmp_path / "missing")])
    assert exit_info.value.code == 2


def test_on_policy_gap_measures_disagreement_on_the_states_each_policy_reaches(recording, tmp_path, sb3_models):
    from teachers.load import load_teacher

    gap = script_module("on_policy_gap")
    teacher = load_teacher(str(sb3_models["a2c_breakout"]), "Breakout")
    obs = torch.rand(5, 4, 84, 84)
    same = gap.Disagreement(teacher, teacher, teacher)  # a student equal to its teacher never disagrees
    same(obs)
    assert same.summary()["states"] == 5 and same.summary()["action_error"] == 0
    assert same.summary()["kl"] == pytest.approx(0, abs=1e-6)

    run = tmp_path / "run"
    train(cfg(recording, alpha=1.0, steps=10), run, torch.device("cpu"), progress=False)
    student, _ = load_student(run)
    probe = gap.Disagreement(student, student, teacher)
    torch.testing.assert_close(probe(obs), student(obs))  # the policy in control is the one that acts
    out = tmp_path / "gap.json"
    assert gap.main([str(run), "--teacher", str(sb3_models["a2c_breakout"]), "--episodes", "1", "--envs", "1",
                     "--mode", "greedy", "--json", str(out)]) == 0
    (report,) = json.loads(out.read_text())
    for name in ("student plays", "teacher plays"):
        assert report[name]["states"] > 0 and 0 <= report[name]["action_error"] <= 1 and report[name]["kl"] >= 0
    final = json.loads((run / "metrics.json").read_text())
    assert report["held_out"]["kl"] == pytest.approx(final["test_kl"])
    with pytest.raises(SystemExit) as exc:
        gap.main([str(tmp_path)])
    assert exc.value.code == 2


def test_teacher_perturbation_calibrates_to_the_asked_kl_and_entropy(recording, tmp_path, sb3_models):
    tp = script_module("teacher_perturbation")
    logits = torch.randn(300, 4, generator=torch.Generator().manual_seed(0)) * 2
    noise = torch.randn(300, 4, generator=torch.Generator().manual_seed(1))
    sigma = tp.noise_scale_for_kl(logits, noise, 0.05)
    assert tp.mean_kl(logits, logits + sigma * noise) == pytest.approx(0.05, rel=1e-4)
    t = tp.temperature_for_entropy(logits, 1.0)
    assert tp.mean_entropy(logits / t) == pytest.approx(1.0, rel=1e-4)
    assert tp.temperature_for_entropy(logits, tp.mean_entropy(logits)) == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(UserError, match="out of reach"):
        tp.temperature_for_entropy(logits, 2.0)  # above log 4, the entropy of the uniform policy

    out = tmp_path / "perturbation.json"
    assert tp.main(["--dataset", str(recording), "--teacher", str(sb3_models["a2c_breakout"]), "--match-kl", "0.05",
                    "--match-entropy", "1.0", "--episodes", "1", "--envs", "1", "--mode", "greedy", "--states", "200",
                    "--json", str(out)]) == 0
    teacher, noisy, tempered = json.loads(out.read_text())["results"]
    assert teacher["kl"] == pytest.approx(0, abs=1e-6) and teacher["action_error"] == 0
    assert noisy["kl"] == pytest.approx(0.05, rel=1e-3)
    assert tempered["entropy"] == pytest.approx(1.0, rel=1e-3) and tempered["action_error"] == 0
    assert tempered["returns"] == teacher["returns"]  # a temperature does not change greedy play
    with pytest.raises(SystemExit) as exc:
        tp.main(["--dataset", str(tmp_path / "missing.h5")])
    assert exc.value.code == 2


def test_life_loss_disagreement_marks_the_steps_before_each_lost_life(recording, tmp_path, sb3_models):
    ll = script_module("life_loss_disagreement")
    lives = np.array([5, 5, 5, 5, 4, 4, 4, 3, 3, 0])  # lives after each step; index 0 is the start
    marked = ll.mark_before_losses(lives, window=2)
    np.testing.assert_array_equal(np.flatnonzero(marked), [3, 4, 6, 7, 8, 9])
    assert not ll.mark_before_losses(np.array([3, 3, 3]), window=5).any()

    run = tmp_path / "run"
    train(cfg(recording, alpha=0.0, steps=10), run, torch.device("cpu"), progress=False)
    out = tmp_path / "ll.json"
    assert ll.main([str(run), "--teacher", str(sb3_models["a2c_breakout"]), "--episodes", "1", "--envs", "1",
                    "--mode", "greedy", "--window", "8", "--json", str(out)]) == 0
    (report,) = json.loads(out.read_text())
    for name in ("student", "teacher"):
        r = report[name]
        assert r["games"] == 1 and r["before_lost_life"]["states"] > 0  # a Breakout game ends by losing every life
        assert r["before_lost_life"]["states"] <= 8 * 5  # at most one window per life
        assert r["before_lost_life"]["states"] + r["elsewhere"]["states"] == r["all"]["states"]
    with pytest.raises(SystemExit) as exc:
        ll.main([str(run), "--window", "0"])
    assert exc.value.code == 2
