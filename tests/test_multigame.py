"""Multi-game students: one student for two games with different action counts, per-game metrics, and resume."""

from __future__ import annotations

import json

import pytest
import torch

from distill.environment.errors import UserError
from distill.recording.writer import RecordConfig, record
from distill.training.multigame import multigame_config, train_multigame
from test_recording import TinyTeacher


@pytest.fixture(scope="module")
def pong_recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec-pong") / "pong-test.h5"
    record(RecordConfig(game="Pong", states=400, envs=4, seed=0, epsilon=0.5, codec="lzf"), TinyTeacher("Pong", 6),
           path, progress=False)
    return path


def test_two_games_train_per_game_and_resume_to_the_same_student(recording, pong_recording, tmp_path):
    options = dict(student="small", steps=6, batch_size=8, eval_every=3, test_cap=64, fraction=0.5, alpha=1.0,
                   lr_schedule="constant", lr_warmup=0.0)
    cfg = multigame_config([recording, pong_recording], **options)
    straight = train_multigame(cfg, tmp_path / "straight", torch.device("cpu"), progress=False)
    assert set(straight["games"]) == {"Breakout", "Pong"}
    assert straight["test_kl"] == pytest.approx((straight["games"]["Breakout"]["test_kl"]
                                                 + straight["games"]["Pong"]["test_kl"]) / 2)
    info = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert [g["n_actions"] for g in info["games"]] == [4, 6] and [g["batch_share"] for g in info["games"]] == [4, 4]

    short = multigame_config([recording, pong_recording], **{**options, "steps": 3})
    train_multigame(short, tmp_path / "resumed", torch.device("cpu"), progress=False)
    resumed = train_multigame(cfg, tmp_path / "resumed", torch.device("cpu"), resume=True, progress=False)
    assert resumed["test_kl"] == pytest.approx(straight["test_kl"], rel=1e-6)


OPTIONS = dict(student="small", steps=6, batch_size=8, eval_every=3, test_cap=64, fraction=0.5, alpha=1.0,
               lr_schedule="constant", lr_warmup=0.0)


def test_streamed_rows_train_the_same_multigame_student_as_rows_in_memory(recording, pong_recording, tmp_path):
    memory = train_multigame(multigame_config([recording, pong_recording], **OPTIONS), tmp_path / "memory",
                             torch.device("cpu"), progress=False)
    streamed = train_multigame(multigame_config([recording, pong_recording], **OPTIONS, max_memory=1e-6),
                               tmp_path / "streamed", torch.device("cpu"), progress=False)
    assert streamed == memory
    a = torch.load(tmp_path / "memory" / "latest.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "streamed" / "latest.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "streamed" / "config.json").read_text())["training_rows"].startswith("streamed")


def test_the_api_takes_a_list_of_recordings_and_evaluate_reports_each_game(recording, pong_recording, tmp_path):
    import distill

    run = tmp_path / "api"
    final = distill.train([recording, pong_recording], run, device="cpu", progress=False, **OPTIONS)
    report = distill.evaluate(run, episodes=1, mode="greedy", with_teacher=False, device="cpu", verbose=False)
    assert list(report["games"]) == ["Breakout", "Pong"]
    for game, result in report["games"].items():
        # the held-out metrics distill-eval recomputes are those training reported for that game
        assert result["held_out"]["test_kl"] == pytest.approx(final["games"][game]["test_kl"], rel=1e-5)
        assert result["held_out"]["test_states"] == final["games"][game]["test_states"]
        assert result["episodes"] == 1 and result["mode"] == "greedy"


def test_eval_of_one_game_of_a_multigame_run_and_its_refusals(recording, pong_recording, tmp_path):
    from distill.cli.evaluate import main as evaluate_main
    from distill.evaluation.report import evaluate_student

    run = tmp_path / "run"
    train_multigame(multigame_config([recording, pong_recording], **{**OPTIONS, "steps": 3}), run,
                    torch.device("cpu"), progress=False)
    report, _ = evaluate_student(run, episodes=0, game="pong", echo=lambda _: None)
    assert list(report["games"]) == ["Pong"]
    with pytest.raises(UserError, match="plays Breakout, Pong, not SpaceInvaders"):
        evaluate_student(run, episodes=0, game="SpaceInvaders", echo=lambda _: None)
    with pytest.raises(UserError, match="pass --game with it"):
        evaluate_student(run, episodes=0, dataset=recording, echo=lambda _: None)
    with pytest.raises(SystemExit) as exc:
        evaluate_main(["--student", str(run), "--teacher", "Breakout", "--episodes", "1", "--device", "cpu"])
    assert exc.value.code == 2


@pytest.mark.parametrize("extra, message", [
    (["--game-mix", "2,x"], "--game-mix '2,x' must be 'equal' or 2 positive weights"),
    (["--game-mix", "1,1,1"], "must be 'equal' or 2 positive weights"),
    (["--life-loss-weight", "2"], "--life-loss-weight is for single-game runs"),
    (["--teacher", "Breakout"], "--teacher names 1 teacher(s) for 2 recordings"),
    (["--batch-size", "1"], "leaves a game no state per batch"),
])
def test_bad_multigame_flags_are_one_line_errors(recording, pong_recording, tmp_path, capsys, extra, message):
    from distill.cli.train import main as train_main

    with pytest.raises(SystemExit) as exc:
        train_main(["--dataset", str(recording), str(pong_recording), "--out", str(tmp_path / "run"), "--steps", "2",
                    "--student", "small", "--device", "cpu", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and message in err[-1] and err[-1].startswith("error:")
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_two_recordings_of_one_game_are_refused(recording, tmp_path):
    import shutil

    copy = tmp_path / "again.h5"
    shutil.copy(recording, copy)
    with pytest.raises(UserError, match="two --dataset recordings of Breakout"):
        train_multigame(multigame_config([recording, copy], **OPTIONS), tmp_path / "run", torch.device("cpu"),
                        progress=False)


def test_two_gloo_processes_train_the_multigame_student_one_process_trains(recording, pong_recording, tmp_path):
    from test_distributed import parameters, torchrun

    single = tmp_path / "single"
    train_multigame(multigame_config([recording, pong_recording], **OPTIONS), single, torch.device("cpu"),
                    progress=False)
    ddp = tmp_path / "ddp"
    result = torchrun([recording, pong_recording], ddp, "--steps", "6")  # the same flags as OPTIONS
    assert result.returncode == 0, result.stderr[-3000:]
    for a, b in zip(parameters(single), parameters(ddp), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    info = json.loads((ddp / "config.json").read_text())
    assert info["processes"] == 2 and [g["batch_share"] for g in info["games"]] == [4, 4]


def test_the_multigame_grid_script_writes_table_figure_and_reuses_runs(recording, pong_recording, tmp_path, capsys):
    from script_helpers import one_line_error, script_module

    grid = script_module("multigame_grid")
    argv = ["--datasets", str(recording), str(pong_recording), "--out", str(tmp_path / "grid"), "--seeds", "1",
            "--fractions", "0.5", "--steps", "4", "--eval-every", "2", "--student", "small", "--batch-size", "8",
            "--test-cap", "64", "--device", "cpu", "--publish", str(tmp_path / "docs"), "--episodes", "2", "--envs", "2"]
    assert grid.main(argv) == 0
    table = (tmp_path / "grid" / "table.md").read_text()
    assert "| fraction | alpha | Breakout | Pong | mean over games |" in table
    results = json.loads((tmp_path / "grid" / "results.json").read_text())
    final = json.loads((tmp_path / "grid" / "runs" / "f0.5-a1-s0" / "metrics.json").read_text())
    row = next(r for r in results if r["alpha"] == 1.0)
    assert row["Pong"]["kl_per_seed"] == [final["games"]["Pong"]["test_kl"]]
    scores = json.loads((tmp_path / "grid" / "runs" / "f0.5-a1-s0" / "scores-sample-2.json").read_text())
    assert set(scores) == {"Breakout", "Pong"} and all(len(v) == 2 for v in scores.values())
    assert "| 0.5 | 1 | " in table.split("Game scores")[1]  # the score table, a row per fraction and alpha
    assert (tmp_path / "docs" / "multigame.png").exists() and (tmp_path / "docs" / "metrics" / "f0.5-a0-s0.csv").exists()
    capsys.readouterr()
    assert grid.main(argv) == 0 and "reuse" in capsys.readouterr().err  # finished runs are not trained again
    assert "other settings" in one_line_error(grid.main, [*argv, "--lr", "0.01"], capsys)
