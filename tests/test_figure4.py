"""scripts/figure4.py: the grid, its figure and table, publishing and reusing runs, parallel workers."""

from __future__ import annotations

import json
import shutil

import pytest

from distill.training.data import recording_episodes, split_by_episodes
from distill.recording.writer import RecordConfig, record

from script_helpers import one_line_error, script_module
from test_recording import TinyTeacher


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
