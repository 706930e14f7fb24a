"""Recording: schema, gradient correctness, crash safety and resume, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from distill.recording.schema import open_recording, summary
from distill.environment.errors import UserError
from distill.recording.writer import RecordConfig, read_committed, record, teacher_step


class TinyTeacher(nn.Module):
    """A small conv policy standing in for a teacher: same contract, fast in float64 finite differences."""

    def __init__(self, game: str = "Breakout", n_actions: int = 4):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(4, 4, 8, stride=8), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 10 * 10, n_actions))
        self.game, self.n_actions, self.sha256, self.path = game, n_actions, "0" * 64, "tiny"

    def forward(self, x):
        return self.net(x)


def test_teacher_step_gradients_match_autograd_and_finite_differences():
    teacher = TinyTeacher()
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, size=(3, 4, 84, 84), dtype=np.uint8)
    logits, dirs, grads = teacher_step(teacher, obs, k=2, generator=torch.Generator().manual_seed(0),
                                       device=torch.device("cpu"))
    assert logits.shape == (3, 4) and dirs.shape == (3, 2, 4) and grads.shape == (3, 2, 4, 84, 84)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=-1), 1.0, rtol=1e-6)
    # autograd, per state and direction, in float64
    t64 = teacher.double()
    x = torch.as_tensor(obs, dtype=torch.float64).div(255).requires_grad_(True)
    for b in range(3):
        for k in range(2):
            out = (torch.log_softmax(t64(x[b:b + 1]), 1)[0] * torch.as_tensor(dirs[b, k], dtype=torch.float64)).sum()
            (g,) = torch.autograd.grad(out, x)
            np.testing.assert_allclose(grads[b, k], g[b].numpy(), rtol=1e-3, atol=1e-6)
    # finite differences on a few pixels
    with torch.no_grad():
        def f(z):
            return (torch.log_softmax(t64(z[None]), 1)[0] * torch.as_tensor(dirs[0, 0], dtype=torch.float64)).sum()
        base = x.detach()[0]
        for pixel in [(0, 10, 10), (3, 40, 71), (2, 83, 0)]:
            step = torch.zeros_like(base)
            step[pixel] = 1e-5
            fd = (f(base + step) - f(base - step)) / 2e-5
            assert grads[0, 0][pixel] == pytest.approx(fd.item(), rel=1e-3, abs=1e-7)


def test_recording_equals_the_teacher_step_then_game_step_loop(tmp_path):
    """The recording loop sends the actions to the games before the teacher's backward pass and writes while they
    play: its file must hold exactly what the plain loop (teacher step, sample, step the games) gives on the seed."""
    teacher, seed, envs, states = TinyTeacher(), 3, 3, 300  # 100 steps: a mid-run flush at 256 rows included
    out = tmp_path / "rec.h5"
    record(RecordConfig(game="Breakout", states=states, projections=2, envs=envs, seed=seed, grad_dtype="float32"),
           teacher, out, progress=False)
    from distill.environment import atari

    venv = atari.make_vec_env("Breakout", n_envs=envs, seed=seed, training=False, subprocesses=True)
    gen = torch.Generator().manual_seed(seed)
    expected = {key: [] for key in ("obs", "logits", "actions", "proj_dirs", "proj_grads")}
    obs = venv.reset()
    try:
        for _ in range(states // envs):
            logits, dirs, grads = teacher_step(teacher, obs, 2, gen, torch.device("cpu"))
            actions = torch.multinomial(torch.softmax(torch.from_numpy(logits), 1), 1, generator=gen).squeeze(1)
            for key, value in zip(expected, (obs.copy(), logits, actions.numpy(), dirs, grads)):
                expected[key].append(value)
            obs = venv.step(actions.numpy())[0]
    finally:
        venv.close()
    with open_recording(out) as f:
        for key, parts in expected.items():
            np.testing.assert_array_equal(f[key][:], np.concatenate(parts), err_msg=key)


def test_recording_schema_and_contents(tmp_path):
    teacher = TinyTeacher()
    out = tmp_path / "rec.h5"
    record(RecordConfig(game="Breakout", states=120, projections=2, envs=3, seed=1), teacher, out, progress=False)
    with open_recording(out) as f:
        assert f["obs"].shape == (120, 4, 84, 84) and f["obs"].dtype == np.uint8
        assert f["logits"].shape == (120, 4) and f["logits"].dtype == np.float32
        assert f["actions"].shape == (120,) and f["actions"].dtype == np.int64
        assert f["episode"].shape == (120,) and f["episode"].dtype == np.int32
        assert f["proj_dirs"].shape == (120, 2, 4)
        assert f["proj_grads"].shape == (120, 2, 4, 84, 84) and f["proj_grads"].dtype == np.int8  # the default
        assert f["proj_grad_scales"].shape == (120, 2) and str(f.attrs["grad_dtype"]) == "int8"
        for key in ("game", "teacher_sha256", "projections", "grad_dtype", "seed", "package_version", "created",
                    "env_settings", "complete"):
            assert key in f.attrs
        assert f.attrs["complete"] and f.attrs["game"] == "Breakout"
        eps = {k: f["episodes"][k][:] for k in ("start", "length", "return", "complete")}
        episode = f["episode"][:]
        # every state belongs to exactly one episode and the table counts them right
        assert eps["length"].sum() == 120
        for e, (start, length) in enumerate(zip(eps["start"], eps["length"])):
            rows = np.flatnonzero(episode == e)
            assert len(rows) == length and rows[0] == start
        x = torch.as_tensor(f["obs"][:8]).float().div(255)
        with torch.no_grad():
            np.testing.assert_allclose(teacher(x).numpy(), f["logits"][:8], rtol=1e-5, atol=1e-5)
    info = summary(out)
    assert info["states"] == 120 and info["compression_obs"] > 10


def test_builtin_codecs_work_without_hdf5plugin(tmp_path, monkeypatch):
    """Where hdf5plugin is missing (e.g. a bare GPU image), gzip/lzf recordings still write and read; zstd ones
    are refused with what to install."""
    import sys

    import distill.recording.schema
    from distill.recording.writer import compression

    teacher = TinyTeacher()
    zstd_file = tmp_path / "zstd.h5"
    record(RecordConfig(game="Breakout", states=20, envs=2, seed=1), teacher, zstd_file, progress=False)
    monkeypatch.setitem(sys.modules, "hdf5plugin", None)  # `import hdf5plugin` now fails
    monkeypatch.setattr(distill.recording.schema, "hdf5plugin", None)
    with pytest.raises(UserError, match="pip install hdf5plugin"):
        compression("zstd")
    with pytest.raises(UserError, match="pip install hdf5plugin"):
        open_recording(zstd_file)
    lzf_file = tmp_path / "lzf.h5"
    record(RecordConfig(game="Breakout", states=20, envs=2, seed=1, codec="lzf"), teacher, lzf_file, progress=False)
    with open_recording(lzf_file) as f:
        assert f["obs"].shape[0] == 20 and f["obs"].compression == "lzf"
        assert np.isfinite(f["proj_grads"][:].astype(np.float32)).all()


def test_gradient_free_recording_holds_frames_and_logits_and_resumes(tmp_path):
    """--projections 0: no directions and no gradients, the teacher's exact logits, a much smaller file, resumable."""
    teacher = TinyTeacher()
    out = tmp_path / "k0.h5"
    record(RecordConfig(game="Breakout", states=40, projections=0, envs=2, seed=1, codec="lzf"), teacher, out,
           progress=False)
    record(RecordConfig(game="Breakout", states=80, projections=0, envs=2, seed=1, codec="lzf"), teacher, out,
           resume=True, progress=False)
    with open_recording(out) as f:
        assert "proj_dirs" not in f and "proj_grads" not in f and int(f.attrs["projections"]) == 0
        assert f["obs"].shape == (80, 4, 84, 84) and f["lives"].shape == (80,) and int(f.attrs["resumes"]) == 1
        obs, logits = f["obs"][:], f["logits"][:]
    with torch.no_grad():
        expected = teacher(torch.as_tensor(obs).float() / 255).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    info = summary(out)
    assert info["projections"] == 0 and info["compression_grads"] is None
    with_grads = tmp_path / "k1.h5"
    record(RecordConfig(game="Breakout", states=80, projections=1, envs=2, seed=1, codec="lzf"), teacher, with_grads,
           progress=False)
    assert out.stat().st_size < with_grads.stat().st_size / 2
    with h5py.File(with_grads, "a") as f:  # a file that promises gradients but lost them is not a recording
        del f["proj_grads"]
    with pytest.raises(UserError, match="missing proj_grads"):
        open_recording(with_grads)


def test_bad_record_settings_are_refused(tmp_path):
    teacher = TinyTeacher()
    with pytest.raises(UserError, match="--states must be at least 1"):
        record(RecordConfig(game="Breakout", states=0), teacher, tmp_path / "a.h5")
    with pytest.raises(UserError, match="--projections must be at least 0"):
        record(RecordConfig(game="Breakout", states=5, projections=-1), teacher, tmp_path / "a.h5")
    with pytest.raises(UserError, match="plays Breakout, not Pong"):
        record(RecordConfig(game="Pong", states=5), teacher, tmp_path / "a.h5")
    with pytest.raises(UserError, match="unknown game"):
        record(RecordConfig(game="Pongg", states=5), teacher, tmp_path / "a.h5")
    out = tmp_path / "b.h5"
    record(RecordConfig(game="Breakout", states=10, envs=2), teacher, out, progress=False)
    before = out.read_bytes()
    with pytest.raises(UserError, match="already exists"):
        record(RecordConfig(game="Breakout", states=10, envs=2), teacher, out, progress=False)
    with pytest.raises(UserError, match="projections=1, not 2"):
        record(RecordConfig(game="Breakout", states=20, envs=2, projections=2), teacher, out, resume=True)
    assert out.read_bytes() == before  # refused resumes leave the file untouched
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("x")
    with pytest.raises(UserError, match="writable"):
        record(RecordConfig(game="Breakout", states=5), teacher, not_a_dir / "sub" / "c.h5")


def test_disk_full_keeps_a_valid_resumable_file(tmp_path, monkeypatch):
    import errno

    from distill.recording import writer as recording

    teacher = TinyTeacher()
    out = tmp_path / "full.h5"
    original = recording._Writer.flush
    calls = {"n": 0}

    def failing_flush(self, episodes):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, episodes)

    monkeypatch.setattr(recording._Writer, "flush", failing_flush)
    with pytest.raises(UserError, match="valid up to 256 states.*--resume"):
        record(RecordConfig(game="Breakout", states=600, envs=4), teacher, out, progress=False)
    monkeypatch.setattr(recording._Writer, "flush", original)
    assert read_committed(out) == 256
    record(RecordConfig(game="Breakout", states=600, envs=4), teacher, out, resume=True, progress=False)
    with open_recording(out) as f:
        assert f["obs"].shape[0] == 600 and f.attrs["complete"]


def test_incomplete_and_corrupt_files_are_refused_for_training(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x89HDF garbage")
    with pytest.raises(UserError, match="not a readable HDF5"):
        open_recording(junk)
    with pytest.raises(UserError, match="not found.*distill-record"):
        open_recording(tmp_path / "missing.h5")


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (Linux /proc; empty elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_resume_after_kill_9_loses_and_duplicates_nothing(tmp_path, sb3_models):
    out = tmp_path / "killed.h5"
    cmd = [sys.executable, "-m", "distill.cli.record", "--game", "Breakout", "--teacher", str(sb3_models["a2c_breakout"]),
           "--states", "700", "--envs", "4", "--out", str(out), "--device", "cpu", "--seed", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    committed = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if out.exists():
            try:
                committed = read_committed(out)
            except (OSError, KeyError):
                continue
            if committed >= 256:
                break
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < committed < 700, "the recording should have been killed midway"
    if sys.platform.startswith("linux"):
        assert len(workers) == 4, "one game worker process per env"
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers), "game workers outlived the killed recording"
    with pytest.raises(UserError, match="incomplete"):
        open_recording(out)  # refused for training until finished
    result = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-500:]
    with open_recording(out) as f:
        assert f["obs"].shape[0] == f["logits"].shape[0] == f["proj_grads"].shape[0] == 700
        assert f.attrs["resumes"] == 1
        episode = f["episode"][:]
        lengths = f["episodes"]["length"][: int(f["n_episodes"][0])]
        assert lengths.sum() == 700 and np.bincount(episode, minlength=len(lengths)).tolist() == lengths.tolist()
        # the states kept from before the kill are intact: stored logits match the teacher on them
        from teachers.load import load_teacher

        teacher = load_teacher(sb3_models["a2c_breakout"], game="Breakout")
        idx = np.array([0, committed // 2, committed - 1, committed, 699])
        with torch.no_grad():
            fresh = teacher(torch.as_tensor(f["obs"][idx]).float().div(255)).numpy()
        np.testing.assert_allclose(fresh, f["logits"][idx], rtol=1e-4, atol=1e-5)
        # no duplicated block: consecutive-resume states differ from the ones before the kill
        assert not np.array_equal(f["obs"][committed - 4:committed], f["obs"][committed:committed + 4])


def test_record_and_inspect_cli(tmp_path, sb3_models, capsys):
    from distill.cli.inspect import main as inspect_main
    from distill.cli.record import main as record_main

    out = tmp_path / "cli.h5"
    assert record_main(["--game", "breakout", "--teacher", str(sb3_models["a2c_breakout"]), "--states", "40",
                        "--envs", "2", "--out", str(out), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert inspect_main([str(out), "--verify", "--samples", "8", "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["complete"] and report["states"] == 40
    # int8 maps by default: rounding gives a few per cent, within --verify's int8 tolerance
    assert 0 < report["max_relative_grad_error"] < 0.15 and report["max_abs_logit_error"] < 1e-5
    with pytest.raises(SystemExit) as exc:
        record_main(["--game", "Breakout", "--teacher", str(sb3_models["a2c_pong"]), "--states", "5",
                     "--out", str(tmp_path / "x.h5")])
    assert exc.value.code == 2 and "6 actions" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        record_main(["--states", "5", "--resume"])
    assert exc.value.code == 2


def test_lookup3_reproduces_hdf5_superblock_checksums(tmp_path):
    from distill.recording.repair import clear_consistency_flags, superblock_checksum_ok

    path = tmp_path / "x.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("a", data=np.arange(10))
    assert superblock_checksum_ok(path)  # our checksum agrees with the one HDF5 wrote
    assert clear_consistency_flags(path) is False  # a cleanly closed file has nothing to clear
