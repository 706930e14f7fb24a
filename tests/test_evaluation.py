"""distill-eval: a student played beside its teacher, with held-out metrics."""

from __future__ import annotations

import json

import pytest
import torch

from distill.training.loop import train

from training_helpers import cfg


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
    # the default checkpoint is the final one, so its held-out numbers are the run's own metrics.json
    final = json.loads((run / "metrics.json").read_text())
    assert report["held_out"]["test_action_error"] == pytest.approx(final["test_action_error"])
    assert report["held_out"]["test_states"] == final["test_states"]
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
