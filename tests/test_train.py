"""distill-train: episode split, alpha 0 equals plain KL training, resume, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from distill.training.data import recording_episodes, split_by_episodes
from distill.environment.errors import UserError
from distill.recording.writer import RecordConfig, record
from distill.training.config import TrainConfig
from distill.training.runs import load_student
from distill.training.loop import train

from script_helpers import one_line_error, script_module
from test_recording import TinyTeacher


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "breakout-test.h5"
    # epsilon-random behaviour makes short, varied games: several episodes in few states. lzf, built into h5py:
    # training does not depend on the codec, and so these tests (CUDA ones included) run where hdf5plugin is missing
    record(RecordConfig(game="Breakout", states=400, envs=4, seed=0, epsilon=0.5, codec="lzf"), TinyTeacher(), path,
           progress=False)
    return path


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


def cfg(recording, **kw):
    base = dict(dataset=str(recording), game="Breakout", student="small", steps=30, batch_size=8, eval_every=10,
                test_cap=64, fraction=0.5)
    return TrainConfig(**(base | kw))


def test_alpha_zero_matches_plain_kl_training(recording, tmp_path):
    from distill.training.data import TrainingData
    from distill.training.losses import kl_teacher_student
    from distill.training.students import make_student

    c = cfg(recording, alpha=0.0, steps=20, lr_warmup=0.25)
    final = train(c, tmp_path / "run", torch.device("cpu"), progress=False)
    trained = make_student("small", 4)
    trained.load_state_dict(torch.load(tmp_path / "run" / "latest.pt", weights_only=False)["model"])
    # the same 20 steps written out by hand with plain KL
    torch.manual_seed(0)
    student = make_student("small", 4)
    opt = torch.optim.Adam(student.parameters(), lr=c.lr)
    gen = torch.Generator().manual_seed(0)
    from distill.training.data import recording_episodes

    split = split_by_episodes(recording_episodes(recording)[0], 0.5, 0)
    data = TrainingData(recording, split.train_rows, torch.device("cpu"), with_gradients=False)
    for step in range(20):
        idx = torch.randint(data.n, (8,), generator=gen)
        obs, logits, _, _ = data.batch(idx)
        loss = kl_teacher_student(student(obs), logits)
        # the default cosine decay, times the linear warm-up over the first 0.25 * 20 steps
        opt.param_groups[0]["lr"] = c.lr * 0.5 * (1 + np.cos(np.pi * step / 20)) * min(1.0, (step + 1) / 5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for a, b in zip(student.parameters(), trained.parameters()):
        torch.testing.assert_close(a, b)
    assert final["step"] == 20 and 0 <= final["test_action_error"] <= 1


def test_run_files_and_resume_continue_where_they_stopped(recording, tmp_path):
    """With a constant learning rate a finished run can be extended to more steps (the cosine case is below)."""
    run = tmp_path / "run"
    train(_constant_cfg(recording, alpha=1.0, steps=20), run, torch.device("cpu"), progress=False)
    for name in ("config.json", "metrics.csv", "metrics.json", "latest.pt", "best.pt"):
        assert (run / name).exists(), name
    assert any((run / "tensorboard").iterdir())
    stored = json.loads((run / "config.json").read_text())  # what a rerun needs to be bit-identical on the CPU
    assert stored["torch_threads"] == torch.get_num_threads() and stored["torch_version"] == torch.__version__
    assert stored["cpu_model"] and stored["cpu_model"] != "unknown"
    with pytest.raises(UserError, match="already exists"):
        train(_constant_cfg(recording, alpha=1.0, steps=40), run, torch.device("cpu"), progress=False)
    with pytest.raises(UserError, match="other settings.*alpha"):
        train(_constant_cfg(recording, alpha=2.0, steps=40), run, torch.device("cpu"), resume=True, progress=False)
    final = train(_constant_cfg(recording, alpha=1.0, steps=40), run, torch.device("cpu"), resume=True, progress=False)
    assert final["step"] == 40
    import csv

    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
    # `seconds` is the run's training time: the resumed invocation continues from the first one's, not from 0
    seconds = [float(r["seconds"]) for r in rows]
    assert seconds == sorted(seconds) and seconds[2] >= seconds[1] > 0
    # resuming equals training straight through
    straight = train(_constant_cfg(recording, alpha=1.0, steps=40), tmp_path / "straight", torch.device("cpu"), progress=False)
    assert straight["test_kl"] == pytest.approx(final["test_kl"], rel=1e-5)


def test_linear_alpha_schedule_falls_to_zero_and_fixes_the_step_count(recording, tmp_path):
    from distill.training.runs import config_differences
    from distill.training.loop import sobolev_weight

    c = cfg(recording, alpha=2.0, steps=40, alpha_schedule="linear")
    assert [sobolev_weight(c, s) for s in (0, 10, 20, 39)] == pytest.approx([2.0, 1.5, 1.0, 0.05])
    assert sobolev_weight(cfg(recording, alpha=2.0, steps=40), 39) == 2.0  # the paper's constant weight by default
    with pytest.raises(UserError, match="--alpha-schedule must be one of constant, linear"):
        cfg(recording, alpha_schedule="cosine").validate()
    linear = train(_constant_cfg(recording, alpha=1.0, steps=20, alpha_schedule="linear"), tmp_path / "linear",
                   torch.device("cpu"), progress=False)
    constant = train(_constant_cfg(recording, alpha=1.0, steps=20), tmp_path / "constant", torch.device("cpu"),
                     progress=False)
    assert linear["test_kl"] != pytest.approx(constant["test_kl"], rel=1e-6)  # the weight reached the loss
    # a falling weight is defined by the run's length: such a run cannot be extended, even at a constant rate
    with pytest.raises(UserError, match="other settings.*steps"):
        train(_constant_cfg(recording, alpha=1.0, steps=40, alpha_schedule="linear"), tmp_path / "linear",
              torch.device("cpu"), resume=True, progress=False)
    with pytest.raises(UserError, match="other settings.*alpha_schedule"):
        train(_constant_cfg(recording, alpha=1.0, steps=20), tmp_path / "linear", torch.device("cpu"), resume=True,
              progress=False)
    # a KL-only run has no term to weigh: it counts as made with any schedule, and runs made before the flag as
    # made with the constant one
    kl_only = tmp_path / "kl"
    train(_constant_cfg(recording, alpha=0.0, steps=10), kl_only, torch.device("cpu"), progress=False)
    assert config_differences(kl_only / "config.json", _constant_cfg(recording, alpha=0.0, steps=10, alpha_schedule="linear")) == {}
    kl_linear = _constant_cfg(recording, alpha=0.0, steps=10, alpha_schedule="linear", teacher="Breakout")
    assert kl_linear.without_unused_settings() == _constant_cfg(recording, alpha=0.0, steps=10)
    sobolev_linear = _constant_cfg(recording, alpha=0.5, alpha_schedule="linear", teacher="Breakout")
    assert sobolev_linear.without_unused_settings() == sobolev_linear  # alpha > 0: every setting counts
    stored = json.loads((tmp_path / "constant" / "config.json").read_text())
    del stored["config"]["alpha_schedule"]
    (tmp_path / "constant" / "config.json").write_text(json.dumps(stored))
    assert config_differences(tmp_path / "constant" / "config.json", _constant_cfg(recording, alpha=1.0, steps=20)) == {}


def test_alpha_until_ends_the_gradient_term_early_and_trains_plain_kl_after_it(recording, tmp_path):
    import csv

    from distill.training.runs import config_differences
    from distill.training.loop import sobolev_weight

    c = cfg(recording, alpha=2.0, steps=40, alpha_schedule="linear", alpha_until=0.5)
    assert [sobolev_weight(c, s) for s in (0, 10, 19, 20, 39)] == pytest.approx([2.0, 1.0, 0.1, 0.0, 0.0])
    # --alpha-until 1 is the plain linear schedule, step for step
    full = cfg(recording, alpha=2.0, steps=40, alpha_schedule="linear")
    assert [sobolev_weight(full, s) for s in range(40)] == [2.0 * (1 - s / 40) for s in range(40)]
    for bad, match in ((0.0, "share of --steps in"), (1.5, "share of --steps in"), (float("nan"), "share of --steps in")):
        with pytest.raises(UserError, match=match):
            cfg(recording, alpha_schedule="linear", alpha_until=bad).validate()
    with pytest.raises(UserError, match="needs --alpha-schedule linear"):
        cfg(recording, alpha_until=0.5).validate()
    run = tmp_path / "until"
    early = train(_constant_cfg(recording, alpha=1.0, steps=20, alpha_schedule="linear", alpha_until=0.5), run,
                  torch.device("cpu"), progress=False)
    late = train(_constant_cfg(recording, alpha=1.0, steps=20, alpha_schedule="linear"), tmp_path / "late",
                 torch.device("cpu"), progress=False)
    assert early["test_kl"] != pytest.approx(late["test_kl"], rel=1e-6)
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # the gradient term is measured while it is built (steps 1-10) and left blank once its weight is 0
    assert float(rows[0]["train_sobolev"]) > 0 and rows[1]["train_sobolev"] == ""
    with pytest.raises(UserError, match="other settings.*alpha_until"):
        train(_constant_cfg(recording, alpha=1.0, steps=20, alpha_schedule="linear"), run, torch.device("cpu"),
              resume=True, progress=False)
    # runs made before the flag fell to 0 at their last step
    stored = json.loads((tmp_path / "late" / "config.json").read_text())
    del stored["config"]["alpha_until"]
    (tmp_path / "late" / "config.json").write_text(json.dumps(stored))
    assert config_differences(tmp_path / "late" / "config.json", _constant_cfg(recording, alpha=1.0, steps=20,
                                                                  alpha_schedule="linear")) == {}


def _constant_cfg(recording, **kw):
    # no warm-up: its length is a share of --steps, so only a run without one extends to exactly a longer straight run
    return cfg(recording, **({"lr_schedule": "constant", "lr_warmup": 0.0} | kw))


def test_cosine_schedule_decays_to_zero_resumes_exactly_and_fixes_the_step_count(recording, tmp_path):
    from distill.training.loop import learning_rate

    c = cfg(recording, alpha=1.0, steps=40, lr_schedule="cosine", lr=1e-3, lr_warmup=0.0)
    assert learning_rate(c, 0) == pytest.approx(1e-3)
    assert learning_rate(c, 20) == pytest.approx(5e-4)
    assert learning_rate(c, 39) == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 39 / 40)))
    assert learning_rate(_constant_cfg(recording, lr=1e-3), 39) == 1e-3
    run = tmp_path / "run"
    train(cfg(recording, alpha=1.0, steps=20, lr_schedule="cosine", lr=1e-3), tmp_path / "short", torch.device("cpu"),
          progress=False)
    with pytest.raises(UserError, match="other settings.*steps"):  # a decaying run is defined by its length
        train(c, tmp_path / "short", torch.device("cpu"), resume=True, progress=False)
    # stop a 40-step run after 20 steps (as an interruption would), then resume it: equal to training straight through
    import shutil

    straight = train(c, tmp_path / "straight", torch.device("cpu"), progress=False)
    train(c, run, torch.device("cpu"), progress=False)
    state = torch.load(run / "latest.pt", weights_only=False)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(learning_rate(c, 39))
    shutil.rmtree(run)
    interrupted = cfg(recording, alpha=1.0, steps=40, lr_schedule="cosine", lr=1e-3, lr_warmup=0.0, eval_every=10)
    _train_until(interrupted, run, stop_at=20)
    resumed = train(c, run, torch.device("cpu"), resume=True, progress=False)
    assert resumed["test_kl"] == pytest.approx(straight["test_kl"], rel=1e-5)


def test_warmup_ramps_the_rate_and_older_runs_count_as_made_without_it(recording, tmp_path):
    from distill.training.loop import learning_rate, warmup_steps

    c = cfg(recording, steps=40, lr=1e-3, lr_warmup=0.25)  # 10 warm-up steps, then the plain cosine
    cosine = [1e-3 * 0.5 * (1 + np.cos(np.pi * s / 40)) for s in range(40)]
    assert warmup_steps(c) == 10
    assert learning_rate(c, 0) == pytest.approx(cosine[0] / 10)
    assert learning_rate(c, 4) == pytest.approx(cosine[4] * 5 / 10)
    assert [learning_rate(c, s) for s in range(9, 40)] == pytest.approx(cosine[9:])
    assert learning_rate(_constant_cfg(recording, steps=40, lr=1e-3, lr_warmup=0.1), 1) == pytest.approx(5e-4)
    assert warmup_steps(cfg(recording, steps=5, lr_warmup=0.01)) == 1  # a positive share always warms up
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(UserError, match="--lr-warmup"):
            cfg(recording, lr_warmup=bad).validate()
    # a run made before the warm-up existed has no lr_warmup in its config: it was made without one
    run = tmp_path / "old"
    train(cfg(recording, steps=20, lr_warmup=0.0), run, torch.device("cpu"), progress=False)
    stored = json.loads((run / "config.json").read_text())
    del stored["config"]["lr_warmup"]
    (run / "config.json").write_text(json.dumps(stored))
    with pytest.raises(UserError, match="other settings.*lr_warmup"):
        train(cfg(recording, steps=20), run, torch.device("cpu"), resume=True, progress=False)
    assert train(cfg(recording, steps=20, lr_warmup=0.0), run, torch.device("cpu"), resume=True,
                 progress=False)["step"] == 20


def _train_until(c: TrainConfig, run, stop_at: int, device: str = "cpu") -> None:
    """Train ``c`` but stop (as a kill would) after the checkpoint at step ``stop_at``."""
    import distill.training.loop as train_module

    real_save = train_module.save_checkpoint

    def save_then_stop(path, student, optimizer, step, best, generator):
        real_save(path, student, optimizer, step, best, generator)
        if path.name == "latest.pt" and step >= stop_at:
            raise KeyboardInterrupt

    train_module.save_checkpoint = save_then_stop
    try:
        with pytest.raises(KeyboardInterrupt):
            train(c, run, torch.device(device), progress=False)
    finally:
        train_module.save_checkpoint = real_save


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_resume_on_cuda_and_across_devices(recording, tmp_path):
    # the checkpoint holds the CPU batch generator's state: loading it onto the GPU once broke every CUDA resume
    c = cfg(recording, alpha=1.0, steps=40, lr_schedule="cosine", lr=1e-3, lr_warmup=0.0, eval_every=10)
    straight = train(c, tmp_path / "straight", torch.device("cuda"), progress=False)
    for first, then in (("cuda", "cuda"), ("cuda", "cpu"), ("cpu", "cuda")):
        run = tmp_path / f"{first}-then-{then}"
        _train_until(c, run, stop_at=20, device=first)
        resumed = train(c, run, torch.device(then), resume=True, progress=False)
        assert resumed["step"] == 40
        assert resumed["test_kl"] == pytest.approx(straight["test_kl"], rel=1e-2)  # TF32 and float noise across devices


@pytest.mark.parametrize("kw,message", [
    ({"alpha": -1.0}, "--alpha must be >= 0"),
    ({"fraction": 1.0}, "strictly between 0 and 1"),
    ({"student": "huge"}, "unknown --student"),
    ({"game": "Pong"}, "recording of Breakout, not Pong"),
    ({"lr_warmup": 1.0}, "--lr-warmup is a share of --steps"),
])
def test_bad_training_input_leaves_no_run_directory(recording, tmp_path, kw, message):
    with pytest.raises(UserError, match=message):
        train(cfg(recording, **kw), tmp_path / "run", torch.device("cpu"), progress=False)
    assert not (tmp_path / "run").exists()


def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from distill.cli.train import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["--game", "Pong"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "no complete recording of Pong" in err and "distill-record --game Pong" in err
    assert len(err.splitlines()) == 1
    for flags, message in ((["--fraction", "1.5"], "--fraction must be strictly between 0 and 1"),
                           (["--device", "tpu"], "unknown --device 'tpu'")):
        with pytest.raises(SystemExit) as exc:  # a bad flag is named before the (failing) search for a recording
            main(["--game", "Pong", *flags])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and message in err and len(err.splitlines()) == 1


def test_latest_recording_is_chosen_by_its_own_game_and_finish_time(recording, tmp_path):
    import os
    import shutil

    import h5py

    from distill.recording.schema import find_latest_recording

    def copy(name: str, finished: str, complete: bool = True):
        path = tmp_path / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(recording, path)
        with h5py.File(path, "a") as f:
            f.attrs["finished"] = finished
            f.attrs["complete"] = complete
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
        del f["proj_dirs"], f["proj_grads"]
    assert find_latest_recording("Breakout", tmp_path / "data") == gradient_free
    assert find_latest_recording("Breakout", tmp_path / "data", needs_gradients=True) == newest
    for path in (newest, older):
        path.unlink()
    with pytest.raises(UserError, match="hold no input gradients .* --teacher Breakout"):
        find_latest_recording("Breakout", tmp_path / "data", needs_gradients=True)


def test_eval_cli_plays_a_student_beside_its_teacher(recording, tmp_path, sb3_models, capsys):
    from distill.cli.evaluate import main

    run = tmp_path / "run"
    train(cfg(recording, alpha=1.0, steps=10), run, torch.device("cpu"), progress=False)
    out = tmp_path / "eval.json"
    gif = tmp_path / "game.gif"
    assert main(["--student", str(run), "--teacher", str(sb3_models["a2c_breakout"]), "--episodes", "2",
                 "--envs", "2", "--mode", "sample", "--json", str(out), "--video", str(gif)]) == 0
    report = json.loads(out.read_text())
    assert report["policy"] == "student" and report["episodes"] == 2
    assert report["teacher"]["episodes"] == 2
    student_mean, teacher_mean = report["mean_return"], report["teacher"]["mean_return"]
    if teacher_mean > 0:  # the tiny teacher can score nothing in two games; then there is no ratio to report
        ratio = report["student_over_teacher_by_mode"]["sample"]
        assert ratio["ratio"] == pytest.approx(student_mean / teacher_mean)
        assert ratio["denominator_games"] == 2
        if ratio["low"] is not None:  # None when a resampled teacher mean can be 0 (a game scored nothing)
            assert ratio["low"] <= ratio["ratio"] <= ratio["high"]
    else:
        assert report["student_over_teacher_by_mode"] == {}
    assert 0 <= report["held_out"]["test_action_error"] <= 1
    # the default checkpoint is the final one, so its held-out numbers are the run's own metrics.json
    final = json.loads((run / "metrics.json").read_text())
    assert report["checkpoint"] == "latest"
    assert report["held_out"]["test_kl"] == pytest.approx(final["test_kl"], rel=1e-5)
    assert gif.stat().st_size > 1000
    # the recording was made by another (tiny) teacher: said, not hidden
    assert report["teacher"]["distilled_from"] is False
    assert "not the one this student was distilled from" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--student", str(tmp_path)])
    assert exc.value.code == 2 and "not a finished distill-train run" in capsys.readouterr().err
    # game-score sweeps can skip the held-out pass; asking for it and skipping it at once is an error
    assert main(["--student", str(run), "--no-teacher", "--no-held-out", "--episodes", "1", "--envs", "1",
                 "--mode", "greedy", "--json", str(out)]) == 0
    skipped = json.loads(out.read_text())
    assert "held_out" not in skipped and skipped["modes"]["greedy"]["episodes"] == 1
    with pytest.raises(SystemExit) as exc:
        main(["--student", str(run), "--no-held-out", "--dataset", str(recording)])
    assert exc.value.code == 2 and "pass one of the two" in capsys.readouterr().err


def test_figure4_script_writes_figure_and_table_and_reuses_runs(recording, tmp_path, capsys):
    module = script_module("figure4")
    args = ["--dataset", str(recording), "--out", str(tmp_path), "--fractions", "0.5", "--seeds", "1",
            "--steps", "10", "--eval-every", "5", "--student", "small", "--test-cap", "32"]
    assert module.main(args) == 0
    table = (tmp_path / "table.md").read_text()
    assert "| 0.5 | 0 |" in table and "| 0.5 | 1 |" in table
    assert "trained on cpu." in table  # the runs' own device, from their config.json
    summary = json.loads((tmp_path / "results.json").read_text())
    for row in summary:  # the generalisation gap is the test KL minus the last logged training KL
        run = tmp_path / "runs" / f"f0.5-a{row['alpha']:g}-s0"
        last = module.read_curve(run)[-1]
        assert row["train_kl_mean"] == pytest.approx(last["train_kl"])
        final = json.loads((run / "metrics.json").read_text())
        assert row["gap_mean"] == pytest.approx(final["test_kl"] - last["train_kl"])
        assert row["action_error_per_seed"] == [pytest.approx(final["test_action_error"])]
        assert row["kl_per_seed"] == [pytest.approx(final["test_kl"])]
        assert f"| 0.5 | {row['alpha']:g} | {final['test_action_error']:.4f} / {final['test_kl']:.4f} |" in table
    assert (tmp_path / "figure4.png").stat().st_size > 1000
    capsys.readouterr()
    old_run = tmp_path / "runs" / "f0.5-a0-s0" / "config.json"  # a run from before config.json named the device
    old_run.write_text(json.dumps({k: v for k, v in json.loads(old_run.read_text()).items() if k != "device"}))
    assert module.main(args) == 0
    assert capsys.readouterr().err.count("reuse") == 2
    assert "trained on cpu, 1 run with no device recorded." in (tmp_path / "table.md").read_text()
    # finished runs made with other settings are refused, not silently reused in the table
    for other in (["--lr-schedule", "constant"], ["--lr", "0.01"], ["--lr-warmup", "0"], ["--kl", "student-teacher"],
                  ["--split-seed", "1"]):
        with pytest.raises(SystemExit) as exc:
            module.main(args + other)
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and "was trained with" in err and other[0] in err and len(err.splitlines()) == 1


def test_figure4_publishes_runs_that_a_new_machine_reuses(recording, tmp_path, capsys):
    """--publish keeps what defines each result in a committed folder; --reuse-from on an empty data/ reuses it."""
    module = script_module("figure4")
    args = ["--dataset", str(recording), "--fractions", "0.5", "--seeds", "1", "--steps", "6", "--eval-every", "3",
            "--student", "small", "--test-cap", "32"]
    docs = tmp_path / "docs"
    assert module.main(args + ["--out", str(tmp_path / "first"), "--publish", str(docs)]) == 0
    assert (docs / "table.md").read_text() == (tmp_path / "first" / "table.md").read_text()
    assert (docs / "figure4.png").exists() and (docs / "results.json").exists()
    assert sorted(p.name for p in (docs / "metrics").iterdir()) == sorted(
        f"f0.5-a{a}-s0{suffix}" for a in (0, 1) for suffix in (".csv", ".json", ".config.json"))
    capsys.readouterr()
    assert module.main(args + ["--out", str(tmp_path / "second"), "--reuse-from", str(docs)]) == 0
    err = capsys.readouterr().err
    assert err.count("restored") == 2 and err.count("reuse") == 2 and "] train " not in err
    assert (tmp_path / "second" / "results.json").read_text() == (tmp_path / "first" / "results.json").read_text()
    # published runs made with other settings are not restored but trained; a KL-only run is restored beside
    # Sobolev runs with another alpha schedule, which it never used
    assert module.main(args + ["--out", str(tmp_path / "third"), "--reuse-from", str(docs), "--lr", "0.01"]) == 0
    err = capsys.readouterr().err
    assert err.count("not restoring") == 2 and "(lr)" in err and err.count("] train ") == 2
    (tmp_path / "empty" / "metrics").mkdir(parents=True)  # several folders: each is looked in, in turn
    assert module.main(args + ["--out", str(tmp_path / "linear"), "--reuse-from", str(tmp_path / "empty"), str(docs),
                               "--alpha-schedule", "linear"]) == 0
    err = capsys.readouterr().err
    assert "restored" in err and "f0.5-a0-s0 from" in err and "not restoring f0.5-a1-s0" in err
    assert "(alpha_schedule)" in err and err.count("] train ") == 1
    assert "alpha schedule linear" in (tmp_path / "linear" / "table.md").read_text()
    assert "holds no metrics/ folder" in one_line_error(
        module.main, args + ["--out", str(tmp_path / "fourth"), "--reuse-from", str(tmp_path / "nothing")], capsys)


def test_figure4_does_not_reuse_runs_made_on_another_recording_at_the_same_path(recording, tmp_path, capsys):
    """A recording made again (or resumed) at the published path has other held-out episodes: its runs are trained."""
    module = script_module("figure4")
    path = tmp_path / "data" / "breakout.h5"
    path.parent.mkdir()
    shutil.copy(recording, path)
    args = ["--dataset", str(path), "--fractions", "0.5", "--seeds", "1", "--steps", "6", "--eval-every", "3",
            "--student", "small", "--test-cap", "32"]
    docs = tmp_path / "docs"
    assert module.main(args + ["--out", str(tmp_path / "first"), "--publish", str(docs)]) == 0
    capsys.readouterr()
    assert module.main(args + ["--out", str(tmp_path / "same"), "--reuse-from", str(docs)]) == 0
    assert capsys.readouterr().err.count("restored") == 2  # the same recording: reused
    record(RecordConfig(game="Breakout", states=400, envs=3, seed=1, epsilon=0.5, codec="lzf"), TinyTeacher(), path,
           progress=False, force=True)
    published = json.loads((docs / "metrics" / "f0.5-a0-s0.config.json").read_text())
    assert published["test_states"] != len(split_by_episodes(recording_episodes(path)[0], 0.5, 0).test_rows)
    assert module.main(args + ["--out", str(tmp_path / "other"), "--reuse-from", str(docs)]) == 0
    err = capsys.readouterr().err
    assert err.count("made on another recording") == 2 and "restored" not in err and err.count("] train ") == 2
    assert f"test_states {published['test_states']} there" in err


def test_figure4_invocations_side_by_side_share_the_grid(recording, tmp_path, capsys):
    """A run claimed by another live invocation is skipped; a dead owner's claim is taken over."""
    import subprocess

    module = script_module("figure4")
    args = ["--dataset", str(recording), "--out", str(tmp_path), "--fractions", "0.5", "--seeds", "1",
            "--steps", "6", "--eval-every", "3", "--student", "small", "--test-cap", "32"]
    other = subprocess.Popen(["sleep", "60"])  # stands in for a second invocation
    try:
        (tmp_path / "runs").mkdir()
        (tmp_path / "runs" / "f0.5-a1-s0.claim").write_text(str(other.pid))
        assert module.main(args) == 0
        err = capsys.readouterr().err
        assert "skip" in err and "still being trained" in err
        assert (tmp_path / "runs" / "f0.5-a0-s0" / "metrics.json").exists()
        assert not (tmp_path / "runs" / "f0.5-a1-s0").exists() and not (tmp_path / "table.md").exists()
    finally:
        other.kill()
        other.wait()
    assert module.main(args) == 0  # the owner is gone: its claim is stale
    err = capsys.readouterr().err
    assert "reuse" in err and "train" in err and (tmp_path / "table.md").exists()
    assert not list((tmp_path / "runs").glob("*.claim"))


def test_figure4_parallel_script_trains_each_run_once(recording, tmp_path):
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "figure4_parallel.sh"
    result = subprocess.run([str(script), "2", "--dataset", str(recording), "--out", str(tmp_path), "--fractions",
                             "0.5", "--seeds", "1", "--steps", "6", "--eval-every", "3", "--student", "small",
                             "--test-cap", "32"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-500:]
    logs = "".join((tmp_path / f"worker-{k}.log").read_text() for k in (1, 2))
    assert logs.count("] train ") == 2  # two runs in the grid, each trained by exactly one worker
    assert (tmp_path / "table.md").exists() and "| 0.5 | 1 |" in (tmp_path / "table.md").read_text()
    # a second invocation in the same folder appends to the workers' logs instead of overwriting them
    again = subprocess.run(result.args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-500:]
    logs = "".join((tmp_path / f"worker-{k}.log").read_text() for k in (1, 2))
    assert logs.count("] train ") == 2 and logs.count("] reuse ") >= 2 and logs.count("=== ") == 4


@pytest.fixture(scope="module")
def sb3_recording(tmp_path_factory, sb3_models):
    from teachers.load import load_teacher

    path = tmp_path_factory.mktemp("rec_sb3") / "breakout-sb3.h5"
    record(RecordConfig(game="Breakout", states=160, envs=4, seed=0, epsilon=0.5, codec="lzf"),
           load_teacher(sb3_models["a2c_breakout"], game="Breakout"), path, progress=False)
    return path


def test_live_teacher_draws_fresh_directions_and_exact_gradients(sb3_models):
    from distill.training.loop import live_projections
    from teachers.load import load_teacher

    teacher = load_teacher(sb3_models["a2c_breakout"], game="Breakout")
    obs = torch.rand(3, 4, 84, 84)
    gen = torch.Generator().manual_seed(0)
    dirs, grads = live_projections(teacher, obs, 4, 2, gen)
    assert dirs.shape == (3, 2, 4) and grads.shape == (3, 2, 4, 84, 84) and not grads.requires_grad
    torch.testing.assert_close(dirs.norm(dim=-1), torch.ones(3, 2))
    x = obs.clone().requires_grad_(True)
    expected = torch.autograd.grad((torch.log_softmax(teacher(x), 1) * dirs[:, 1]).sum(), x)[0]
    torch.testing.assert_close(grads[:, 1], expected)
    dirs_again, _ = live_projections(teacher, obs, 4, 2, gen)
    assert not torch.allclose(dirs, dirs_again)  # fresh every call


def test_training_with_the_live_teacher_and_refusing_another(sb3_recording, sb3_models, tmp_path):
    final = train(cfg(sb3_recording, alpha=1.0, teacher=str(sb3_models["a2c_breakout"])), tmp_path / "live",
                  torch.device("cpu"), progress=False)
    assert np.isfinite(final["test_kl"])
    info = json.loads((tmp_path / "live" / "config.json").read_text())
    assert info["directions"].startswith("live")
    with pytest.raises(UserError, match="is not the teacher that made"):
        train(cfg(sb3_recording, alpha=1.0, teacher=str(sb3_models["ppo_breakout"])), tmp_path / "other",
              torch.device("cpu"), progress=False)
    assert not (tmp_path / "other").exists()


def test_gradient_free_recording_trains_kl_only_or_with_the_live_teacher(sb3_models, tmp_path, capsys):
    from teachers.load import load_teacher

    path = tmp_path / "k0.h5"
    record(RecordConfig(game="Breakout", states=160, envs=4, seed=0, epsilon=0.5, codec="lzf", projections=0),
           load_teacher(sb3_models["a2c_breakout"], game="Breakout"), path, progress=False)
    with pytest.raises(UserError, match="holds no input gradients .* --teacher"):
        train(cfg(path, alpha=1.0), tmp_path / "refused", torch.device("cpu"), progress=False)
    assert not (tmp_path / "refused").exists()
    figure4 = script_module("figure4")
    assert "holds no input gradients" in one_line_error(
        figure4.main, ["--dataset", str(path), "--out", str(tmp_path / "grid"), "--alphas", "0", "1"], capsys)
    assert not (tmp_path / "grid").exists()
    assert np.isfinite(train(cfg(path, alpha=0.0), tmp_path / "kl", torch.device("cpu"), progress=False)["test_kl"])
    final = train(cfg(path, alpha=1.0, teacher=str(sb3_models["a2c_breakout"])), tmp_path / "live",
                  torch.device("cpu"), progress=False)
    assert np.isfinite(final["test_kl"])
    rows = (tmp_path / "live" / "metrics.csv").read_text().splitlines()[1:]
    assert all(float(row.split(",")[4]) > 0 for row in rows)  # the Sobolev term was trained on live directions
    diagnosis = script_module("diagnose_sobolev").diagnose(tmp_path / "live", states=8)  # teacher projections drawn live
    assert diagnosis["directions"] == "live teacher" and -1.0 <= diagnosis["cosine"] <= 1.0


def test_grid_flags_give_the_live_teacher_to_sobolev_runs_only(tmp_path):
    """figure4.py shares distill-train's flags; a KL-only run draws no directions, so it stores no teacher and a
    grid with --teacher reuses the KL-only runs of a grid without it."""
    import argparse
    from dataclasses import asdict, replace

    from distill.training.config import add_arguments, from_arguments
    from distill.training.runs import config_differences

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--teacher", "teacher.zip"])
    assert from_arguments(args, dataset="rec.h5", alpha=1.0).teacher == "teacher.zip"
    assert from_arguments(args, dataset="rec.h5", alpha=0.0).teacher is None
    assert from_arguments(parser.parse_args([]), dataset="rec.h5", alpha=1.0).teacher is None
    grid_args = script_module("figure4").parse_args(["--dataset", "r.h5", "--out", "o", "--teacher", "T"])
    assert grid_args.teacher == "T"
    # a run stored with a teacher (as KL-only runs were before) still counts as the same KL-only run without one
    for alpha, differs in ((0.0, {}), (1.0, {"teacher": "T.zip"})):
        stored = TrainConfig(dataset="rec.h5", game="Breakout", alpha=alpha, teacher="T.zip")
        run = tmp_path / f"a{alpha:g}"
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"config": asdict(stored)}))
        assert config_differences(run / "config.json", replace(stored, teacher=None)) == differs


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
