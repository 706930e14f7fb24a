"""distill-train: alpha 0 equals plain KL training, schedules, resume, the live teacher, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distill.training.data import split_by_episodes
from distill.environment.errors import UserError
from distill.recording.writer import RecordConfig, record
from distill.training.config import TrainConfig
from distill.training.loop import train
from distill.training.metrics import evaluate_states

from script_helpers import one_line_error, script_module
from training_helpers import cfg, constant_cfg, train_until


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
    # the reported metrics are those of the trained student on every held-out state
    assert final["step"] == 20 and final["test_states"] == len(split.test_rows)
    recomputed = evaluate_states(trained, recording, split.test_rows, torch.device("cpu"))
    assert final["test_action_error"] == pytest.approx(recomputed["test_action_error"])
    assert final["test_kl"] == pytest.approx(recomputed["test_kl"], rel=1e-5)


def test_run_files_and_resume_continue_where_they_stopped(recording, tmp_path):
    """With a constant learning rate a finished run can be extended to more steps (the cosine case is below)."""
    run = tmp_path / "run"
    train(constant_cfg(recording, alpha=1.0, steps=20), run, torch.device("cpu"), progress=False)
    for name in ("config.json", "metrics.csv", "metrics.json", "latest.pt", "best.pt"):
        assert (run / name).exists(), name
    assert any((run / "tensorboard").iterdir())
    stored = json.loads((run / "config.json").read_text())  # what a rerun needs to be bit-identical on the CPU
    assert stored["torch_threads"] == torch.get_num_threads() and stored["torch_version"] == torch.__version__
    assert stored["cpu_model"] and stored["cpu_model"] != "unknown"
    with pytest.raises(UserError, match="already exists"):
        train(constant_cfg(recording, alpha=1.0, steps=40), run, torch.device("cpu"), progress=False)
    with pytest.raises(UserError, match="other settings.*alpha"):
        train(constant_cfg(recording, alpha=2.0, steps=40), run, torch.device("cpu"), resume=True, progress=False)
    final = train(constant_cfg(recording, alpha=1.0, steps=40), run, torch.device("cpu"), resume=True, progress=False)
    assert final["step"] == 40
    import csv

    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
    # `seconds` is the run's training time: the resumed invocation continues from the first one's, not from 0
    seconds = [float(r["seconds"]) for r in rows]
    assert seconds == sorted(seconds) and seconds[2] >= seconds[1] > 0
    # resuming equals training straight through
    straight = train(constant_cfg(recording, alpha=1.0, steps=40), tmp_path / "straight", torch.device("cpu"), progress=False)
    assert straight["test_kl"] == pytest.approx(final["test_kl"], rel=1e-5)


def test_linear_alpha_schedule_falls_to_zero_and_fixes_the_step_count(recording, tmp_path):
    from distill.training.runs import config_differences
    from distill.training.loop import sobolev_weight

    c = cfg(recording, alpha=2.0, steps=40, alpha_schedule="linear")
    assert [sobolev_weight(c, s) for s in (0, 10, 20, 39)] == pytest.approx([2.0, 1.5, 1.0, 0.05])
    assert sobolev_weight(cfg(recording, alpha=2.0, steps=40), 39) == 2.0  # the paper's constant weight by default
    with pytest.raises(UserError, match="--alpha-schedule must be one of constant, linear"):
        cfg(recording, alpha_schedule="cosine").validate()
    linear = train(constant_cfg(recording, alpha=1.0, steps=20, alpha_schedule="linear"), tmp_path / "linear",
                   torch.device("cpu"), progress=False)
    constant = train(constant_cfg(recording, alpha=1.0, steps=20), tmp_path / "constant", torch.device("cpu"),
                     progress=False)
    assert linear["test_kl"] != pytest.approx(constant["test_kl"], rel=1e-6)  # the weight reached the loss
    # a falling weight is defined by the run's length: such a run cannot be extended, even at a constant rate
    with pytest.raises(UserError, match="other settings.*steps"):
        train(constant_cfg(recording, alpha=1.0, steps=40, alpha_schedule="linear"), tmp_path / "linear",
              torch.device("cpu"), resume=True, progress=False)
    with pytest.raises(UserError, match="other settings.*alpha_schedule"):
        train(constant_cfg(recording, alpha=1.0, steps=20), tmp_path / "linear", torch.device("cpu"), resume=True,
              progress=False)
    # a KL-only run has no term to weigh: it counts as made with any schedule, and runs made before the flag as
    # made with the constant one
    kl_only = tmp_path / "kl"
    train(constant_cfg(recording, alpha=0.0, steps=10), kl_only, torch.device("cpu"), progress=False)
    assert config_differences(kl_only / "config.json", constant_cfg(recording, alpha=0.0, steps=10, alpha_schedule="linear")) == {}
    kl_linear = constant_cfg(recording, alpha=0.0, steps=10, alpha_schedule="linear", teacher="Breakout")
    assert kl_linear.without_unused_settings() == constant_cfg(recording, alpha=0.0, steps=10)
    sobolev_linear = constant_cfg(recording, alpha=0.5, alpha_schedule="linear", teacher="Breakout")
    assert sobolev_linear.without_unused_settings() == sobolev_linear  # alpha > 0: every setting counts
    stored = json.loads((tmp_path / "constant" / "config.json").read_text())
    del stored["config"]["alpha_schedule"]
    (tmp_path / "constant" / "config.json").write_text(json.dumps(stored))
    assert config_differences(tmp_path / "constant" / "config.json", constant_cfg(recording, alpha=1.0, steps=20)) == {}


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
    early = train(constant_cfg(recording, alpha=1.0, steps=20, alpha_schedule="linear", alpha_until=0.5), run,
                  torch.device("cpu"), progress=False)
    late = train(constant_cfg(recording, alpha=1.0, steps=20, alpha_schedule="linear"), tmp_path / "late",
                 torch.device("cpu"), progress=False)
    assert early["test_kl"] != pytest.approx(late["test_kl"], rel=1e-6)
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # the gradient term is measured while it is built (steps 1-10) and left blank once its weight is 0
    assert float(rows[0]["train_sobolev"]) > 0 and rows[1]["train_sobolev"] == ""
    with pytest.raises(UserError, match="other settings.*alpha_until"):
        train(constant_cfg(recording, alpha=1.0, steps=20, alpha_schedule="linear"), run, torch.device("cpu"),
              resume=True, progress=False)
    # runs made before the flag fell to 0 at their last step
    stored = json.loads((tmp_path / "late" / "config.json").read_text())
    del stored["config"]["alpha_until"]
    (tmp_path / "late" / "config.json").write_text(json.dumps(stored))
    assert config_differences(tmp_path / "late" / "config.json", constant_cfg(recording, alpha=1.0, steps=20,
                                                                  alpha_schedule="linear")) == {}


def test_cosine_schedule_decays_to_zero_resumes_exactly_and_fixes_the_step_count(recording, tmp_path):
    from distill.training.loop import learning_rate

    c = cfg(recording, alpha=1.0, steps=40, lr_schedule="cosine", lr=1e-3, lr_warmup=0.0)
    assert learning_rate(c, 0) == pytest.approx(1e-3)
    assert learning_rate(c, 20) == pytest.approx(5e-4)
    assert learning_rate(c, 39) == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 39 / 40)))
    assert learning_rate(constant_cfg(recording, lr=1e-3), 39) == 1e-3
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
    train_until(interrupted, run, stop_at=20)
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
    assert learning_rate(constant_cfg(recording, steps=40, lr=1e-3, lr_warmup=0.1), 1) == pytest.approx(5e-4)
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


def test_a_smooth_student_trains_loads_as_it_was_trained_and_older_runs_are_relu(recording, tmp_path):
    from distill.training.runs import load_student, read_run_config

    run = tmp_path / "silu"
    final = train(cfg(recording, steps=10, activation="silu"), run, torch.device("cpu"), progress=False)
    student, info = load_student(run)
    assert info["config"]["activation"] == "silu"
    assert sum(isinstance(m, torch.nn.SiLU) for m in student.modules()) == 3
    assert not any(isinstance(m, torch.nn.ReLU) for m in student.modules())
    from distill.training.data import recording_episodes

    split = split_by_episodes(recording_episodes(recording)[0], 0.5, 0)
    assert evaluate_states(student, recording, split.test_rows, torch.device("cpu"))["test_kl"] == pytest.approx(
        final["test_kl"], rel=1e-5)
    # another activation is another run: --resume refuses it, naming the setting
    with pytest.raises(UserError, match="other settings.*activation"):
        train(cfg(recording, steps=10), run, torch.device("cpu"), resume=True, progress=False)
    # a run made before the option existed has no activation in its config: it was a ReLU student
    stored = json.loads((run / "config.json").read_text())
    del stored["config"]["activation"]
    (run / "config.json").write_text(json.dumps(stored))
    assert read_run_config(run / "config.json")["config"]["activation"] == "relu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_resume_on_cuda_and_across_devices(recording, tmp_path):
    # the checkpoint holds the CPU batch generator's state: loading it onto the GPU once broke every CUDA resume
    c = cfg(recording, alpha=1.0, steps=40, lr_schedule="cosine", lr=1e-3, lr_warmup=0.0, eval_every=10)
    straight = train(c, tmp_path / "straight", torch.device("cuda"), progress=False)
    for first, then in (("cuda", "cuda"), ("cuda", "cpu"), ("cpu", "cuda")):
        run = tmp_path / f"{first}-then-{then}"
        train_until(c, run, stop_at=20, device=first)
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
    # streamed rows: the workers replay the live directions' draws between batches, so the run is the same
    streamed = train(cfg(sb3_recording, alpha=1.0, teacher=str(sb3_models["a2c_breakout"]), max_memory=1e-6),
                     tmp_path / "live-streamed", torch.device("cpu"), progress=False)
    assert streamed == final
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
