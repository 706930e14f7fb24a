"""int8 gradient storage (--grad-dtype int8): per-map scales, the same recording otherwise, read transparently."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from distill.environment.errors import UserError
from distill.recording.schema import GRAD_SCALES, decode_gradients, open_recording, quantize_gradients
from distill.recording.verify import verify_recording
from distill.recording.writer import RecordConfig, record
from distill.training.data import TrainingData
from distill.training.loop import train
from distill.training.streaming import StreamingData, training_bytes
from test_recording import TinyTeacher
from training_helpers import cfg


def test_quantize_scales_each_map_by_its_largest_magnitude():
    grads = np.zeros((2, 2, 3), np.float32)
    grads[0, 0] = [1.0, -0.5, 0.25]
    grads[0, 1] = [0.0, 0.0, -2.0]
    # grads[1] stays all zero: scale 0, values 0
    q, scales = quantize_gradients(grads)
    assert q.dtype == np.int8 and scales.dtype == np.float32 and scales.shape == (2, 2)
    np.testing.assert_allclose(scales, [[1 / 127, 2 / 127], [0, 0]], rtol=1e-7)
    assert q[0, 0].tolist() == [127, -64, 32]  # -63.5 and 31.75 round to the nearest integer
    assert q[0, 1].tolist() == [0, 0, -127] and not q[1].any()
    decoded = decode_gradients(torch.from_numpy(q), torch.from_numpy(scales)).numpy()
    assert decoded.dtype == np.float32
    np.testing.assert_allclose(decoded[0, 0], [1.0, -64 / 127, 32 / 127], rtol=1e-6)
    assert np.abs(decoded - grads).max() <= 1 / 127  # half a step of the larger scale
    assert not decoded[1].any()
    as_stored = torch.tensor([[1.5, -2.0]], dtype=torch.float16)
    assert decode_gradients(as_stored, None).dtype == torch.float32  # float16/32 come back as they are


def _record(path, grad_dtype: str, states: int = 96, resume: bool = False):
    record(RecordConfig(game="Breakout", states=states, envs=4, seed=0, epsilon=0.5, codec="lzf",
                        grad_dtype=grad_dtype), TinyTeacher(), path, resume=resume, progress=False)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """The same seeded recording with float32 and with int8 gradients."""
    root = tmp_path_factory.mktemp("grad-storage")
    _record(root / "f32.h5", "float32")
    _record(root / "int8.h5", "int8")
    return root / "f32.h5", root / "int8.h5"


def test_int8_recording_matches_the_float32_one_but_for_rounding(recordings):
    f32, int8 = recordings
    with open_recording(f32) as a, open_recording(int8) as b:
        assert str(b.attrs["grad_dtype"]) == "int8"
        for name in ("obs", "logits", "actions", "episode", "proj_dirs", "lives"):
            assert np.array_equal(a[name][:], b[name][:]), name
        assert b["proj_grads"].dtype == np.int8 and b[GRAD_SCALES].shape == (96, 1)
        exact = a["proj_grads"][:]
        scales = b[GRAD_SCALES][:]
        decoded = decode_gradients(torch.from_numpy(b["proj_grads"][:]), torch.from_numpy(scales)).numpy()
    step = scales[:, :, None, None, None]
    assert (np.abs(decoded - exact) <= step / 2 + 1e-9).all()  # each value within half a step of its map's scale
    cosine = (decoded * exact).reshape(96, -1).sum(1) / (
        np.linalg.norm(decoded.reshape(96, -1), axis=1) * np.linalg.norm(exact.reshape(96, -1), axis=1))
    assert cosine.min() > 0.99


def test_an_interrupted_int8_recording_resumes_with_its_scales(tmp_path):
    out = tmp_path / "resumed.h5"
    _record(out, "int8", states=48)
    _record(out, "int8", resume=True)
    with open_recording(out) as f:
        assert int(f.attrs["resumes"]) == 1 and f["proj_grads"].shape[0] == f[GRAD_SCALES].shape[0] == 96
        assert (f[GRAD_SCALES][:] > 0).all()


def test_int8_rows_decode_the_same_in_memory_and_streamed(recordings):
    _, int8 = recordings
    rows = np.arange(10, 70)
    idx = torch.tensor([5, 0, 59, 5, 31])
    with open_recording(int8) as f:
        attrs = dict(f.attrs)
        expected = decode_gradients(torch.from_numpy(f["proj_grads"][:][rows[idx.numpy()]]),
                                    torch.from_numpy(f[GRAD_SCALES][:][rows[idx.numpy()]]))
    memory = TrainingData(int8, rows, torch.device("cpu"))
    assert memory.grads.dtype == torch.int8  # held as stored, decoded per batch
    assert torch.equal(memory.batch(idx)[3], expected)
    streamed = StreamingData(int8, rows, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    streamed.start(generator, 5, None, 1, slice(None), workers=0)
    draw = torch.randint(len(rows), (5,), generator=torch.Generator().manual_seed(0))
    _, _, _, grads = streamed.batch(draw)
    with open_recording(int8) as f:
        stored = f["proj_grads"][:][rows[draw.numpy()]]
        scales = f[GRAD_SCALES][:][rows[draw.numpy()]]
    assert torch.equal(grads, decode_gradients(torch.from_numpy(stored), torch.from_numpy(scales)))
    # the memory estimate counts one byte per value and a float32 scale per map
    assert training_bytes(10, attrs, True) == 10 * (4 * 84 * 84 + 4 * 4 + 4 * 4 + 4 * 84 * 84 + 4)


def test_training_on_int8_streamed_equals_in_memory(recordings, tmp_path):
    _, int8 = recordings
    a = train(cfg(int8, steps=6, alpha=1.0), tmp_path / "memory", torch.device("cpu"), progress=False)
    b = train(cfg(int8, steps=6, alpha=1.0, max_memory=1e-6), tmp_path / "streamed", torch.device("cpu"),
              progress=False)
    assert a == b and np.isfinite(a["test_kl"])


def test_an_int8_recording_without_its_scales_is_refused(recordings, tmp_path):
    _, int8 = recordings
    broken = tmp_path / "no-scales.h5"
    broken.write_bytes(int8.read_bytes())
    with h5py.File(broken, "a") as f:
        del f[GRAD_SCALES]
    with pytest.raises(UserError, match=f"not a sobolev-distill recording \\(missing {GRAD_SCALES}\\)"):
        open_recording(broken)


def test_cli_records_int8_that_verifies_against_its_teacher(sb3_models, tmp_path):
    out = tmp_path / "int8-cli.h5"
    cmd = [sys.executable, "-m", "distill.cli.record", "--game", "Breakout", "--teacher",
           str(sb3_models["a2c_breakout"]), "--states", "64", "--envs", "4", "--codec", "lzf", "--device", "cpu",
           "--grad-dtype", "int8", "--out", str(out)]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    report = verify_recording(out, samples=None, progress=False)
    assert report["failures"] == [] and 0 < report["max_relative_grad_error"] < 0.15
    bad = subprocess.run([*cmd[:-4], "--grad-dtype", "int4", "--out", str(tmp_path / "x.h5")], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "int8" in bad.stderr and "Traceback" not in bad.stderr


def test_storage_benchmark_measures_every_option_against_float32(recordings, capsys):
    from script_helpers import one_line_error, script_module

    bench = script_module("bench_grad_storage")
    f32, int8 = recordings
    assert bench.main(["--dataset", str(f32), "--states", "64"]) == 0
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and not line.startswith("| stored as")}
    assert set(rows) == set(bench.OPTIONS)
    assert float(rows["float32"][4].split()[0]) == 1.0 and rows["float32"][5].startswith("0.00e+00")
    assert float(rows["int8, scale per map (default)"][1]) < float(rows["float16"][1])
    assert 0.99 < float(rows["int8, scale per map (default)"][4].split()[0]) < 1.0
    assert "must be float32" in one_line_error(bench.main, ["--dataset", str(int8)], capsys)


def test_int8_with_several_projections_scales_each_map(tmp_path):
    out = tmp_path / "k2.h5"
    record(RecordConfig(game="Breakout", states=24, envs=4, projections=2, codec="lzf", grad_dtype="int8"),
           TinyTeacher(), out, progress=False)
    with open_recording(out) as f:
        q, scales = f["proj_grads"][:], f[GRAD_SCALES][:]
    assert q.shape == (24, 2, 4, 84, 84) and scales.shape == (24, 2)
    assert (np.abs(q).reshape(24, 2, -1).max(axis=2) == 127).all()  # every map reaches full scale
    data = TrainingData(out, np.arange(24), torch.device("cpu"))
    decoded = data.batch(torch.arange(24))[3]
    assert torch.equal(decoded, decode_gradients(torch.from_numpy(q), torch.from_numpy(scales)))
