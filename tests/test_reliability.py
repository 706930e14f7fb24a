"""Damaged recordings are detected and never trained on silently: checksums, --verify, non-finite data and losses,
truncated files. Each test damages a real recording the way a disk, a copy or a bug would, then runs the CLIs."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from distill.cli.add_lives import main as add_lives_main
from distill.cli.inspect import main as inspect_main
from distill.cli.train import main as train_main
from distill.recording.schema import PER_STATE
from distill.training.data import recording_episodes, split_by_episodes

TRAIN_FLAGS = ["--alpha", "1", "--fraction", "0.5", "--steps", "4", "--eval-every", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def checked_recording(tmp_path_factory, sb3_models):
    """240 Breakout states of a tiny SB3 teacher (so that --verify can recompute them), written with checksums."""
    from distill.recording.writer import RecordConfig, record
    from teachers.load import load_teacher

    path = tmp_path_factory.mktemp("reliable") / "breakout.h5"
    record(RecordConfig(game="Breakout", states=240, envs=4, seed=0, epsilon=0.5, codec="lzf"),
           load_teacher(str(sb3_models["a2c_breakout"]), game="Breakout"), path, progress=False)
    return path


def _copy(src, tmp_path, name="copy.h5"):
    dst = tmp_path / name
    shutil.copy(src, dst)
    return dst


def _one_line_error(capsys, call) -> str:
    """Run a CLI main, assert exit 2 with exactly one line on stderr, and return that line."""
    with pytest.raises(SystemExit) as exc:
        call()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "Traceback" not in err, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]  # the rest are progress bars
    assert len(errors) == 1 and lines[-1] == errors[0], err
    return errors[0]


def _flip_byte_in_chunk(path, name: str, row: int) -> tuple[int, int]:
    """Change one byte in the middle of the stored chunk of ``name`` that holds ``row``; returns its row range."""
    with h5py.File(path, "r") as f:
        ds = f[name]
        chunk_rows = ds.chunks[0]
        info = ds.id.get_chunk_info_by_coord((row - row % chunk_rows,) + (0,) * (ds.ndim - 1))
        offset, size = info.byte_offset, info.size
    with open(path, "r+b") as handle:
        handle.seek(offset + size // 2)
        byte = handle.read(1)
        handle.seek(offset + size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    first = row - row % chunk_rows
    return first, first + chunk_rows - 1


def _first_training_row(path) -> int:
    episode, _ = recording_episodes(path)
    return int(split_by_episodes(episode, 0.5, 0).train_rows[0])  # train's default --split-seed is 0


def test_new_recordings_checksum_every_chunked_dataset(checked_recording):
    with h5py.File(checked_recording, "r") as f:
        assert f.attrs["checksums"] == "fletcher32"
        chunked = [f[k] for k in PER_STATE if k in f] + [f["episodes"][k] for k in f["episodes"]]
        assert len(chunked) == 12 and all(ds.fletcher32 for ds in chunked)  # with the int8 maps' scales


def test_verify_passes_a_sound_recording_on_a_sample_and_on_every_state(checked_recording, capsys):
    import json

    for flags in (["--verify"], ["--verify", "all"]):
        assert inspect_main([str(checked_recording), *flags, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["failures"] == [] and set(report["checks"].values()) <= {
            "ok", "ok on the rows read (--verify all checks every chunk)"}
    assert report["verified_all"] and report["verified_states"] == 240
    # int8 maps (the default): their rounding is a few per cent, within --verify's int8 tolerance
    assert 0 < report["max_relative_grad_error"] < 0.15 and report["max_abs_logit_error"] < 1e-5


@pytest.mark.parametrize("dataset", ["obs", "logits", "proj_grads"])
def test_a_flipped_byte_in_a_chunk_is_a_one_line_checksum_error_in_inspect_and_train(checked_recording, tmp_path,
                                                                                    capsys, dataset):
    path = _copy(checked_recording, tmp_path)
    first, last = _flip_byte_in_chunk(path, dataset, _first_training_row(path))
    err = _one_line_error(capsys, lambda: inspect_main([str(path), "--verify", "all"]))
    assert f"{dataset}, rows {first}-" in err and "checksum" in err
    err = _one_line_error(capsys, lambda: train_main(["--dataset", str(path), *TRAIN_FLAGS, "--out",
                                                      str(tmp_path / "run")]))
    assert f"is damaged ({dataset}, rows {first}-" in err and "checksum" in err and "record it again" in err
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_changed_string_attribute_is_detected(checked_recording, tmp_path, capsys):
    """HDF5 keeps string attributes in a heap without checksums; the attributes' digest covers them."""
    path = _copy(checked_recording, tmp_path)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"BreakoutNoFrameskip-v4")  # the env_id attribute's value
    raw[at + 8] ^= 0x01  # one bit of "NoFrameskip"
    path.write_bytes(bytes(raw))
    err = _one_line_error(capsys, lambda: inspect_main([str(path)]))
    assert "is damaged (its attributes fail their checksum" in err
    err = _one_line_error(capsys, lambda: train_main(["--dataset", str(path), *TRAIN_FLAGS, "--out",
                                                      str(tmp_path / "run")]))
    assert "is damaged (its attributes fail their checksum" in err


def test_a_truncated_recording_is_a_one_line_error_everywhere(checked_recording, tmp_path, capsys):
    path = _copy(checked_recording, tmp_path)
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)
    for call in (lambda: inspect_main([str(path)]), lambda: inspect_main([str(path), "--verify", "all"]),
                 lambda: train_main(["--dataset", str(path), *TRAIN_FLAGS, "--out", str(tmp_path / "run")]),
                 lambda: add_lives_main([str(path)])):
        err = _one_line_error(capsys, call)
        assert f"is truncated ({size // 2} of {size} bytes)" in err
    with open(path, "r+b") as handle:  # cut inside the superblock: not an HDF5 file any more
        handle.truncate(20)
    assert "not a readable HDF5 file" in _one_line_error(capsys, lambda: inspect_main([str(path)]))


def test_verify_fails_with_exit_2_on_wrong_logits_and_an_inconsistent_episode_table(checked_recording, tmp_path,
                                                                                    capsys):
    path = _copy(checked_recording, tmp_path)
    with h5py.File(path, "a") as f:  # rewritten through HDF5: the checksums are valid, the values are not
        f["logits"][7] += 0.5
    err = _one_line_error(capsys, lambda: inspect_main([str(path), "--verify", "all"]))
    assert "logits: stored logits differ from the teacher's by up to 5.00e-01" in err
    path = _copy(checked_recording, tmp_path, "table.h5")
    with h5py.File(path, "a") as f:
        f["episodes"]["length"][0] += 3
    err = _one_line_error(capsys, lambda: inspect_main([str(path), "--verify"]))
    assert "structure: episode 0 has" in err and "but the table says" in err


def test_non_finite_training_data_stops_the_run_and_keeps_the_last_good_checkpoint(checked_recording, tmp_path,
                                                                                   capsys):
    path = _copy(checked_recording, tmp_path)
    run = tmp_path / "run"
    flags = ["--dataset", str(path), *TRAIN_FLAGS[:4], "--eval-every", "2", "--device", "cpu", "--out", str(run),
             "--lr-schedule", "constant"]
    assert train_main([*flags, "--steps", "4"]) == 0
    capsys.readouterr()
    checkpoint = (run / "latest.pt").read_bytes()
    row = _first_training_row(path)
    with h5py.File(path, "a") as f:  # int8 maps (the default): a NaN can only be in a map's scale
        good = f["proj_grad_scales"][row].copy()
        f["proj_grad_scales"][row, 0] = np.nan
    err = _one_line_error(capsys, lambda: inspect_main([str(path), "--verify", "all"]))
    assert f"finite values: proj_grad_scales at row(s) {row}" in err
    err = _one_line_error(capsys, lambda: train_main([*flags, "--steps", "8", "--resume"]))
    assert f"proj_grad_scales holds non-finite values (NaN or infinity) at row(s) {row}" in err
    assert (run / "latest.pt").read_bytes() == checkpoint
    with h5py.File(path, "a") as f:  # the cause fixed: the run resumes and finishes
        f["proj_grad_scales"][row] = good
    assert train_main([*flags, "--steps", "8", "--resume"]) == 0
    import json

    final = json.loads((run / "metrics.json").read_text())
    assert final["step"] == 8 and np.isfinite(final["test_kl"])


def test_a_diverging_loss_stops_with_a_one_line_error_and_never_writes_nan_metrics(checked_recording, tmp_path,
                                                                                  capsys):
    run = tmp_path / "run"
    err = _one_line_error(capsys, lambda: train_main(["--dataset", str(checked_recording), *TRAIN_FLAGS, "--lr",
                                                      "1e30", "--lr-warmup", "0", "--out", str(run)]))
    assert err.startswith("error: training diverged:") and "between steps 0 and 2" in err
    assert not (run / "metrics.json").exists() and not (run / "latest.pt").exists()


def test_recordings_without_checksums_still_load_and_say_so(checked_recording, tmp_path, capsys):
    old = tmp_path / "old.h5"
    with h5py.File(checked_recording, "r") as src, h5py.File(old, "w", libver="latest") as dst:
        def rewrite(name, obj):
            if isinstance(obj, h5py.Dataset):
                dst.create_dataset(name, data=obj[()], chunks=obj.chunks, maxshape=obj.maxshape)
                dst[name].attrs.update(dict(obj.attrs))
        src.visititems(rewrite)
        dst.attrs.update({k: v for k, v in src.attrs.items() if k not in ("checksums", "attributes_sha256")})
    assert inspect_main([str(old), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "checksums  none (recorded before checksums were written" in out
    assert "checksums     none: recorded before checksums were written" in out
    assert train_main(["--dataset", str(old), *TRAIN_FLAGS, "--out", str(tmp_path / "run")]) == 0


@pytest.mark.parametrize("command,argv,named", [
    ("record", ["--states", "8", "--seed", "-1"], "--seed must be 0 or more"),
    ("record", ["--states", "8", "--temperature", "nan"], "--temperature must be a positive number"),
    ("record", ["--states", "8", "--temperature", "inf"], "--temperature must be a positive number"),
    ("train", ["--seed", "-1"], "--seed must be 0 or more"),
    ("train", ["--split-seed", "-1"], "--split-seed must be 0 or more"),
    ("evaluate", ["--teacher", "Breakout", "--seed", "-1"], "--seed must be 0 or more"),
    ("evaluate", ["--teacher", "Breakout", "--temperature", "nan"], "--temperature must be a positive number"),
    ("inspect", ["{recording}", "--seed", "-1"], "--seed must be 0 or more"),
    ("add_lives", ["{recording}", "--window", "0"], "--window must be at least 1"),
    ("quickstart", ["--seed", "-1"], "--seed 0 or more"),
])
def test_bad_values_the_fault_matrix_found_are_one_line_errors(checked_recording, tmp_path, capsys, command, argv,
                                                              named):
    """Values argparse accepts but the commands cannot use (NaN, negative seeds), found by scripts/fault_matrix.py."""
    import importlib

    main = importlib.import_module(f"distill.cli.{command}").main
    argv = [a.format(recording=checked_recording) for a in argv]
    if command == "record":
        argv += ["--out", str(tmp_path / "r.h5"), "--device", "cpu"]
    if command == "train":
        argv = ["--dataset", str(checked_recording), *TRAIN_FLAGS, "--out", str(tmp_path / "run"), *argv]
    if command == "quickstart":
        argv += ["--out", str(tmp_path / "quick")]
    assert named in _one_line_error(capsys, lambda: main(argv))
    assert not (tmp_path / "r.h5").exists() and not (tmp_path / "run").exists()


def test_a_full_disk_stops_training_with_a_one_line_error_and_resume_finishes(checked_recording, tmp_path):
    """Writes past a file-size limit fail as on a full disk (EFBIG instead of ENOSPC; SIGXFSZ ignored)."""
    import json
    import resource
    import signal
    import subprocess
    import sys

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (32 << 10, 32 << 10))  # config.json fits, a checkpoint does not

    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "distill.cli.train", "--dataset", str(checked_recording), *TRAIN_FLAGS,
           "--out", str(run)]
    full = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=small_disk)
    lines = [line for line in full.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    assert lines[-1].startswith(f"error: writing to {run} failed (") and "--resume" in lines[-1]
    assert not (run / "latest.pt").exists() and not list(run.glob("*.tmp"))  # no half-written checkpoint
    assert subprocess.run([*cmd, "--resume"], capture_output=True).returncode == 0
    assert json.loads((run / "metrics.json").read_text())["step"] == 4


def test_a_full_disk_stops_recording_with_a_one_line_error_keeping_what_was_committed(sb3_models, tmp_path):
    import resource
    import signal
    import subprocess
    import sys

    from distill.recording.verify import verify_recording

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (30 << 20, 30 << 20))

    out = tmp_path / "full.h5"
    cmd = [sys.executable, "-m", "distill.cli.record", "--teacher", str(sb3_models["a2c_breakout"]), "--game",
           "Breakout", "--states", "600", "--envs", "4", "--codec", "lzf", "--grad-dtype", "float16", "--device",
           "cpu", "--out", str(out)]  # float16 maps: 600 states overflow the 30 MiB limit
    full = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=small_disk)
    last = [line for line in full.stderr.replace("\r", "\n").splitlines() if line.strip()][-1]
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
    assert last.startswith(f"error: writing {out} failed (File too large); the file is valid up to ")
    committed = int(last.split("valid up to ")[1].split()[0])
    with h5py.File(out, "r", libver="latest", swmr=True) as f:
        assert int(f["committed"][0]) == committed > 0
        kept = f["obs"][:committed]
    assert subprocess.run([*cmd, "--resume"], capture_output=True).returncode == 0
    with h5py.File(out, "r") as f:
        assert f.attrs["complete"] and int(f["committed"][0]) == 600
        assert np.array_equal(f["obs"][:committed], kept)  # nothing committed before the full disk was lost
    assert verify_recording(out, samples=32, progress=False)["failures"] == []


def test_a_damaged_student_checkpoint_is_a_one_line_error_in_train_and_eval(checked_recording, tmp_path, capsys):
    """torch.load does not check the CRC-32s torch.save writes: a changed weight would load silently."""
    from distill.cli.evaluate import main as eval_main

    run = tmp_path / "run"
    assert train_main(["--dataset", str(checked_recording), *TRAIN_FLAGS, "--out", str(run)]) == 0
    capsys.readouterr()
    raw = bytearray((run / "latest.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the tensors' bytes
    (run / "latest.pt").write_bytes(bytes(raw))
    for call in (lambda: eval_main(["--student", str(run), "--no-teacher", "--episodes", "1", "--device", "cpu"]),
                 lambda: train_main(["--dataset", str(checked_recording), *TRAIN_FLAGS, "--out", str(run),
                                     "--resume"])):
        err = _one_line_error(capsys, call)
        assert f"the student checkpoint {run / 'latest.pt'} is damaged" in err and "CRC-32" in err
    (run / "latest.pt").write_bytes(bytes(raw[:1000]))  # cut short
    assert "is damaged" in _one_line_error(capsys, lambda: eval_main(["--student", str(run), "--no-teacher",
                                                                      "--episodes", "1", "--device", "cpu"]))
