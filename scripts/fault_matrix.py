"""Fault matrix: damage recordings and runs the way disks, copies, kills and typos do, and check what every CLI does.

Families of trials, each on a small recording (``--states``, default 1200) of the shipped Breakout teacher and short
trainings of it:

- ``kill record``: ``kill -9`` of ``distill-record`` at a random moment, then ``--resume`` to completion. Checked: the
  rows committed before the kill are unchanged after the resume (nothing lost beyond the uncommitted tail), the file
  holds exactly the target (nothing duplicated) and passes ``distill-inspect --verify``, and no game worker process
  outlives the kill (orphans).
- ``kill train``: ``kill -9`` of ``distill-train`` at a random moment, then ``--resume`` to completion; the final
  metrics must equal those of the same training run without interruption.
- ``byte flip``: 1-200 bytes overwritten at random places of a copy of the recording; ``distill-inspect --verify all``
  and a short ``distill-train`` on it. A command that ends with exit 0 on a file whose stored values differ from the
  original's is a silent wrong result.
- ``truncation``: the recording cut at a random length; inspect, train and add-lives must each give a one-line error.
- ``checkpoint flip``: 1-200 bytes overwritten in a finished run's ``latest.pt``; ``--resume`` reads it and must
  either refuse it or end with the uninterrupted run's metrics.
- ``full disk``: recording and training into a small tmpfs (or, where mounting is not allowed, under an
  ``RLIMIT_FSIZE`` file-size limit with ``SIGXFSZ`` ignored, so that writes fail with EFBIG as on a full disk); then
  ``--resume`` with space to completion, checked as above.
- ``wrong teacher``: verifying, resuming, training and evaluating with a teacher of another game or another network.
- ``bad flag``: every numeric flag of every CLI given a value argparse accepts but the command cannot use (negative,
  zero, NaN, infinity), and missing input files.

Each trial ends as ``ok`` (right result, exit 0), ``clean error`` (exit 2, one ``error:`` line, no traceback),
``traceback`` (any Python traceback, or another failure that is not a one-line error) or ``silent wrong``; the table
also counts states lost, states duplicated and orphaned processes. Run from the repository root::

    python scripts/fault_matrix.py --out docs/fault-matrix      # about 14 minutes on 2 CPU cores

It writes ``trials.jsonl`` (one line per trial, with the command's last error line) and ``table.md`` there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distill.recording.schema import PER_STATE, open_for_reading  # noqa: E402

OUTCOMES = ("ok", "clean error", "traceback", "silent wrong")


# ---------------------------------------------------------------------------------------------------------------
# running commands
# ---------------------------------------------------------------------------------------------------------------
def cli(name: str, *args) -> list[str]:
    return [sys.executable, "-m", f"distill.cli.{name}", *map(str, args)]


def teacher_cli(*args) -> list[str]:
    return [sys.executable, "-m", "teachers.cli", *map(str, args)]


def run(cmd: list[str], log: Path, timeout: float = 600, preexec=None) -> tuple[int, str]:
    """Run ``cmd`` to its end; (exit code, stderr). Output goes to ``log`` (a pipe could fill and block it)."""
    with log.open("w") as err:
        try:
            rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err, timeout=timeout, cwd=ROOT,
                                preexec_fn=preexec).returncode
        except subprocess.TimeoutExpired:
            rc = -999
    return rc, log.read_text(errors="replace")


def classify(rc: int, stderr: str) -> tuple[str, str]:
    """(outcome, the line that says why) of a finished command: ok, clean error, or traceback."""
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if "Traceback (most recent call last)" in stderr:
        return "traceback", next((line for line in reversed(lines) if not line.startswith(" ")), last)
    if rc == 0:
        return "ok", ""
    errors = [line for line in lines if re.match(r"(\S+: )?error: ", line)]  # ours, or argparse's "prog: error:"
    if rc == 2 and len(errors) == 1 and last == errors[0]:
        return "clean error", last
    return "traceback", f"exit {rc}: {last}"  # not a traceback, but not a one-line error either


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie has ended and only waits to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_at(cmd: list[str], delay: float, log: Path) -> tuple[bool, int]:
    """Start ``cmd``, ``kill -9`` it after ``delay`` s; (whether it was still running, processes that outlived it)."""
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, start_new_session=True)
        deadline = time.time() + delay
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        if proc.poll() is not None:
            return False, 0
        below = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        end = time.time() + 5  # the workers' parent-death signal is immediate; allow for a busy machine
        while time.time() < end and any(alive(p) for p in below):
            time.sleep(0.1)
        orphans = [p for p in below if alive(p)]
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # clean up for the next trial, whatever this one left
        except ProcessLookupError:
            pass
        return True, len(orphans)


# ---------------------------------------------------------------------------------------------------------------
# what a recording holds
# ---------------------------------------------------------------------------------------------------------------
def committed_digest(path: Path, n: int | None = None) -> tuple[int, str]:
    """(committed states, sha256 of the first ``n`` (default: committed) rows of every per-state dataset)."""
    if not path.exists():
        return 0, hashlib.sha256().hexdigest()
    with open_for_reading(path) as f:
        committed = int(f["committed"][0])
        n = committed if n is None else n
        digest = hashlib.sha256()
        for name in PER_STATE:
            if name in f:
                digest.update(np.ascontiguousarray(f[name][:n]).tobytes())
    return committed, digest.hexdigest()


def content_differences(original: Path, damaged: Path) -> list[str]:
    """Names of the datasets and attributes whose stored values differ between two recordings (None: unreadable)."""
    differ = []
    with h5py.File(original, "r") as a:
        try:
            b = h5py.File(damaged, "r")
        except Exception:  # noqa: BLE001 -- unreadable means nothing in it can be used
            return ["(unreadable file)"]
        with b:
            try:
                if {k: str(v) for k, v in a.attrs.items()} != {k: str(v) for k, v in b.attrs.items()}:
                    differ.append("attributes")
            except Exception:  # noqa: BLE001
                differ.append("attributes (unreadable)")

            def compare(name, obj):
                if not isinstance(obj, h5py.Dataset):
                    return
                try:
                    same = np.array_equal(obj[()], b[name][()], equal_nan=obj.dtype.kind == "f") and \
                        {k: str(v) for k, v in obj.attrs.items()} == {k: str(v) for k, v in b[name].attrs.items()}
                except Exception:  # noqa: BLE001
                    differ.append(f"{name} (unreadable)")
                    return
                if not same:
                    differ.append(name)
            a.visititems(compare)
    return differ


# ---------------------------------------------------------------------------------------------------------------
# the matrix
# ---------------------------------------------------------------------------------------------------------------
class Matrix:
    def __init__(self, work: Path, out: Path, states: int, seed: int):
        self.work, self.out, self.states = work, out, states
        self.rng = random.Random(seed)
        self.trials: list[dict] = []
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.jsonl = (out / "trials.jsonl").open("w")

    def log(self, name: str) -> Path:
        return self.logs / f"{len(self.trials):04d}-{name}.log"

    def add(self, family: str, what: str, outcome: str, detail: str = "", lost: int = 0, duplicated: int = 0,
            orphans: int = 0) -> None:
        trial = {"family": family, "what": what, "outcome": outcome, "detail": detail[:300], "lost": lost,
                 "duplicated": duplicated, "orphans": orphans}
        self.trials.append(trial)
        self.jsonl.write(json.dumps(trial) + "\n")
        self.jsonl.flush()
        mark = "" if outcome in ("ok", "clean error") and not (lost or duplicated or orphans) else "  <-- "
        print(f"[{len(self.trials):3d}] {family:<13} {outcome:<12} {what}{mark}{detail[:160] if mark else ''}",
              flush=True)

    # -- the shared inputs --------------------------------------------------------------------------------------
    def record_cmd(self, out: Path, *extra) -> list[str]:
        return cli("record", "--game", "Breakout", "--states", self.states, "--envs", 4, "--epsilon", 0.3,
                   "--seed", 0, "--device", "cpu", "--out", out, *extra)

    def train_cmd(self, dataset: Path, out: Path, *extra) -> list[str]:
        return cli("train", "--dataset", dataset, "--alpha", 1, "--fraction", 0.5, "--steps", 120, "--eval-every", 20,
                   "--batch-size", 32, "--device", "cpu", "--seed", 0, "--out", out, *extra)

    def prepare(self) -> None:
        self.recording = self.work / "base.h5"
        start = time.time()
        rc, err = run(self.record_cmd(self.recording, "--force"), self.logs / "base-record.log")
        assert rc == 0, err
        self.record_seconds = time.time() - start
        self.reference_run = self.work / "reference-run"
        start = time.time()
        rc, err = run(self.train_cmd(self.recording, self.reference_run, "--force"), self.logs / "base-train.log")
        assert rc == 0, err
        self.train_seconds = time.time() - start
        self.reference_metrics = json.loads((self.reference_run / "metrics.json").read_text())
        print(f"base recording {self.states} states in {self.record_seconds:.1f} s, reference training in "
              f"{self.train_seconds:.1f} s", flush=True)

    # -- kill -9 --------------------------------------------------------------------------------------------------
    def check_recording(self, path: Path, before: tuple[int, str]) -> tuple[str, str, int, int]:
        """After a resume: (outcome, detail, lost, duplicated) against the digest taken after the kill."""
        from distill.recording.verify import verify_recording

        n_before, digest_before = before
        committed, _ = committed_digest(path)
        lost = 0 if committed_digest(path, n_before)[1] == digest_before else n_before
        duplicated = max(0, committed - self.states)
        with h5py.File(path, "r") as f:
            rows = {name: f[name].shape[0] for name in PER_STATE if name in f}
            complete = bool(f.attrs["complete"])
        duplicated += sum(max(0, r - self.states) for r in rows.values())
        report = verify_recording(path, samples=64, progress=False)
        problems = report["failures"] + ([] if complete and committed == self.states else
                                         [f"complete={complete}, committed={committed}"])
        if lost or duplicated or problems:
            return "silent wrong", "; ".join(problems) or "rows changed", lost, duplicated
        return "ok", f"{n_before} states committed at the kill", 0, 0

    def resume_recording(self, path: Path, log: str) -> tuple[str, str, int, int]:
        """``--resume`` an interrupted recording to completion and check it against what it had committed."""
        before = committed_digest(path)
        rc, err = run(self.record_cmd(path, "--resume"), self.log(log))
        outcome, detail = classify(rc, err)
        if outcome != "ok":
            return outcome, detail, 0, 0
        return self.check_recording(path, before)

    def kill_record(self, trials: int) -> None:
        for i in range(trials):
            path = self.work / f"killed-{i}.h5"
            path.unlink(missing_ok=True)
            delay = self.rng.uniform(0.5, 0.95 * self.record_seconds)
            was_running, orphans = kill_at(self.record_cmd(path), delay, self.log("kill-record"))
            outcome, detail, lost, duplicated = self.resume_recording(path, "resume-record")
            what = f"kill -9 at {delay:.1f} s{'' if was_running else ' (had finished)'}, then --resume"
            self.add("kill record", what, outcome, detail, lost, duplicated, orphans)
            path.unlink(missing_ok=True)

    def same_as_reference(self, run_dir: Path) -> tuple[str, str]:
        final = json.loads((run_dir / "metrics.json").read_text())
        keys = ("step", "test_kl", "test_action_error", "test_states")
        if all(final[k] == self.reference_metrics[k] for k in keys):
            return "ok", f"final test_kl {final['test_kl']:.6f} = uninterrupted run's"
        return "silent wrong", "final metrics differ from the uninterrupted run: " + ", ".join(
            f"{k} {final[k]} vs {self.reference_metrics[k]}" for k in keys if final[k] != self.reference_metrics[k])

    def kill_train(self, trials: int) -> None:
        for i in range(trials):
            run_dir = self.work / f"killed-run-{i}"
            shutil.rmtree(run_dir, ignore_errors=True)
            delay = self.rng.uniform(0.5, 0.95 * self.train_seconds)
            was_running, orphans = kill_at(self.train_cmd(self.recording, run_dir), delay, self.log("kill-train"))
            rc, err = run(self.train_cmd(self.recording, run_dir, "--resume"), self.log("resume-train"))
            outcome, detail = classify(rc, err)
            if outcome == "ok":
                outcome, detail = self.same_as_reference(run_dir)
            what = f"kill -9 at {delay:.1f} s{'' if was_running else ' (had finished)'}, then --resume"
            self.add("kill train", what, outcome, detail, orphans=orphans)
            shutil.rmtree(run_dir, ignore_errors=True)

    # -- damaged files ----------------------------------------------------------------------------------------------
    def damaged_commands(self, path: Path) -> list[tuple[str, list[str]]]:
        return [("inspect --verify all", cli("inspect", path, "--verify", "all", "--device", "cpu")),
                ("train", self.train_cmd(path, self.work / "damaged-run", "--steps", 4, "--eval-every", 2,
                                         "--force"))]

    def byte_flips(self, files: int) -> None:
        size = self.recording.stat().st_size
        for i in range(files):
            path = self.work / "flipped.h5"
            shutil.copy(self.recording, path)
            n_bytes = self.rng.choice((1, 10, 200))
            with path.open("r+b") as handle:
                for _ in range(n_bytes):
                    offset = self.rng.randrange(size)
                    handle.seek(offset)
                    old = handle.read(1)[0]
                    handle.seek(offset)
                    handle.write(bytes([old ^ self.rng.randrange(1, 256)]))
            differ = content_differences(self.recording, path)
            for name, cmd in self.damaged_commands(path):
                rc, err = run(cmd, self.log("flip"))
                outcome, detail = classify(rc, err)
                if outcome == "ok" and differ:
                    outcome, detail = "silent wrong", "exit 0, but these differ from the original: " + ", ".join(differ)
                elif outcome == "ok":
                    detail = "the bytes changed hold nothing the file uses"
                self.add("byte flip", f"file {i}: {n_bytes} byte(s), {name}", outcome, detail)
            shutil.rmtree(self.work / "damaged-run", ignore_errors=True)
            path.unlink()

    def truncations(self, files: int) -> None:
        size = self.recording.stat().st_size
        for i in range(files):
            path = self.work / "cut.h5"
            shutil.copy(self.recording, path)
            length = self.rng.randrange(1, size)
            os.truncate(path, length)
            for name, cmd in [*self.damaged_commands(path), ("add-lives", cli("add_lives", path))]:
                rc, err = run(cmd, self.log("cut"))
                outcome, detail = classify(rc, err)
                if outcome == "ok":
                    outcome, detail = "silent wrong", f"exit 0 on a file cut to {length} of {size} bytes"
                self.add("truncation", f"cut at {length / size:.0%}, {name}", outcome, detail)
            shutil.rmtree(self.work / "damaged-run", ignore_errors=True)
            path.unlink()

    def checkpoint_flips(self, files: int) -> None:
        """Bytes changed in a finished run's ``latest.pt``; ``--resume`` of the run reads it (and writes the final
        metrics again from it), as ``distill-eval`` would."""
        for i in range(files):
            run_dir = self.work / "flipped-run"
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.copytree(self.reference_run, run_dir)
            checkpoint = run_dir / "latest.pt"
            raw = bytearray(checkpoint.read_bytes())
            n_bytes = self.rng.choice((1, 10, 200))
            for _ in range(n_bytes):
                raw[self.rng.randrange(len(raw))] ^= self.rng.randrange(1, 256)
            checkpoint.write_bytes(bytes(raw))
            rc, err = run(self.train_cmd(self.recording, run_dir, "--resume"), self.log("checkpoint-flip"))
            outcome, detail = classify(rc, err)
            if outcome == "ok":
                outcome, detail = self.same_as_reference(run_dir)
                if outcome == "ok":
                    detail = "the bytes changed hold nothing the checkpoint uses"
            self.add("checkpoint flip", f"run {i}: {n_bytes} byte(s) of latest.pt, train --resume", outcome, detail)
        shutil.rmtree(self.work / "flipped-run", ignore_errors=True)

    # -- full disk --------------------------------------------------------------------------------------------------
    def small_disk(self, megabytes: int) -> tuple[Path, callable, str]:
        """A directory that fills after ``megabytes``: a tmpfs, or a file-size limit; (dir, preexec, how)."""
        mount = Path(tempfile.mkdtemp(dir=self.work, prefix="small-disk-"))
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(mount)],
                            capture_output=True).returncode == 0
        if ok:
            return mount, None, f"tmpfs of {megabytes} MiB"

        def limit():  # a write past the limit fails with EFBIG, as one past a full disk fails with ENOSPC
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (megabytes << 20, megabytes << 20))
        return mount, limit, f"RLIMIT_FSIZE of {megabytes} MiB (no tmpfs: mount not allowed)"

    def release(self, mount: Path) -> None:
        subprocess.run(["umount", str(mount)], capture_output=True)
        shutil.rmtree(mount, ignore_errors=True)

    def full_disk(self) -> None:
        size_mib = self.recording.stat().st_size >> 20
        # recording: the disk fills part-way; the file keeps what it committed; resumed where there is space
        mount, limit, how = self.small_disk(max(2, size_mib // 3))
        path = mount / "full.h5"
        rc, err = run(self.record_cmd(path), self.log("full-record"), preexec=limit)
        outcome, detail = classify(rc, err)
        if outcome == "ok":
            outcome, detail = "silent wrong", "exit 0 although the disk was full"
        self.add("full disk", f"distill-record into a {how}", outcome, detail)
        moved = self.work / "after-full.h5"
        shutil.copy(path, moved) if path.exists() else moved.unlink(missing_ok=True)
        self.release(mount)
        outcome, detail, lost, duplicated = self.resume_recording(moved, "full-record-resume")
        self.add("full disk", "the recording copied where there is space, then --resume", outcome, detail, lost,
                 duplicated)
        moved.unlink(missing_ok=True)
        # training: checkpoints and logs cannot be written; resumed once there is space
        mount, limit, how = self.small_disk(1)
        run_dir = mount / "run"
        filler = mount / "filler"
        if limit is None:  # leave the tmpfs a few KiB: config.json fits, a checkpoint does not
            with filler.open("wb") as handle:
                handle.write(b"\0" * ((1 << 20) - (64 << 10)))
        rc, err = run(self.train_cmd(self.recording, run_dir), self.log("full-train"),
                      preexec=limit if limit is None else self._tiny_limit)
        outcome, detail = classify(rc, err)
        if outcome == "ok":
            outcome, detail = "silent wrong", "exit 0 although the disk was full"
        self.add("full disk", f"distill-train into a {how}", outcome, detail)
        filler.unlink(missing_ok=True)
        kept = self.work / "after-full-run"
        shutil.rmtree(kept, ignore_errors=True)
        if run_dir.exists():
            shutil.copytree(run_dir, kept)
        self.release(mount)
        rc, err = run(self.train_cmd(self.recording, kept, "--resume"), self.log("full-train-resume"))
        outcome, detail = classify(rc, err)
        if outcome == "ok":
            outcome, detail = self.same_as_reference(kept)
        self.add("full disk", "the run copied where there is space, then --resume", outcome, detail)
        shutil.rmtree(kept, ignore_errors=True)

    @staticmethod
    def _tiny_limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))  # config.json fits, a checkpoint does not

    # -- wrong teacher ----------------------------------------------------------------------------------------------
    def other_breakout_teacher(self) -> Path:
        """A Breakout A2C teacher with other (random) weights: right game, wrong network."""
        path = self.work / "other-breakout-teacher.zip"
        code = ("import gymnasium as gym, ale_py; from stable_baselines3 import A2C; "
                "from distill.environment.atari import make_vec_env; "
                "A2C('CnnPolicy', make_vec_env('Breakout', n_envs=1, seed=1, training=True), seed=1,"
                " device='cpu').save(%r)" % str(path))
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True)
        return path

    def wrong_teacher(self) -> None:
        other = self.other_breakout_teacher()
        resumable = self.work / "wrong-teacher.h5"
        shutil.copy(self.recording, resumable)
        cases = [
            ("inspect --verify with the Pong teacher", cli("inspect", self.recording, "--verify", "--teacher", "Pong")),
            ("inspect --verify with another Breakout network",
             cli("inspect", self.recording, "--verify", "--teacher", other)),
            ("record --resume with the SpaceInvaders teacher",
             self.record_cmd(resumable, "--resume", "--states", self.states + 100, "--teacher", "SpaceInvaders")),
            ("record --resume with another Breakout network",
             self.record_cmd(resumable, "--resume", "--states", self.states + 100, "--teacher", other)),
            ("train --teacher Pong on a Breakout recording",
             self.train_cmd(self.recording, self.work / "wrong-run", "--teacher", "Pong", "--force")),
            ("train --teacher with another Breakout network",
             self.train_cmd(self.recording, self.work / "wrong-run", "--teacher", other, "--force")),
            ("eval a Breakout student on Pong",
             cli("evaluate", "--student", self.reference_run, "--game", "Pong", "--episodes", 1, "--device", "cpu")),
            ("eval the Pong teacher as Breakout",
             cli("evaluate", "--teacher", "Pong", "--game", "Breakout", "--episodes", 1, "--device", "cpu")),
        ]
        for what, cmd in cases:
            rc, err = run(cmd, self.log("wrong-teacher"))
            outcome, detail = classify(rc, err)
            if outcome == "ok":
                outcome, detail = "silent wrong", "exit 0 with a teacher that does not match"
            self.add("wrong teacher", what, outcome, detail)
        if committed_digest(resumable) != committed_digest(self.recording):
            self.add("wrong teacher", "the refused resumes left the recording unchanged", "silent wrong",
                     "the recording changed", lost=self.states)
        shutil.rmtree(self.work / "wrong-run", ignore_errors=True)

    # -- bad flags --------------------------------------------------------------------------------------------------
    def bad_flag_cases(self) -> list[tuple[str, list[str], str]]:
        """(what, command, what its error must name) for each bad value."""
        rec, run_dir, missing = self.recording, self.reference_run, self.work / "no-such-file.h5"
        scratch = self.work / "bad-flag-scratch"
        base = {
            "distill-teacher": teacher_cli("--game", "Breakout", "--steps", 64, "--envs", 1, "--device", "cpu",
                                           "--out", scratch / "teacher.zip",
                                           "--force"),
            "distill-record": self.record_cmd(scratch / "rec.h5", "--states", 40, "--force"),
            "distill-inspect": cli("inspect", rec, "--device", "cpu"),
            "distill-train": self.train_cmd(rec, scratch / "run", "--steps", 2, "--eval-every", 1, "--force"),
            "distill-eval": cli("evaluate", "--student", run_dir, "--dataset", rec, "--episodes", 1, "--envs", 1,
                                "--device", "cpu"),
            "distill-add-lives": cli("add_lives", rec),
            "distill-quickstart": cli("quickstart", "--states", 200, "--steps", 2, "--episodes", 1,
                                      "--out", scratch / "quick"),
        }
        ints_below_1 = {  # flags that need a positive count: 0 and -1 are both wrong
            "distill-teacher": ["--steps", "--envs", "--checkpoint-every"],
            "distill-record": ["--states", "--envs"],
            "distill-inspect": ["--samples"],
            "distill-train": ["--steps", "--batch-size", "--eval-every", "--test-cap", "--life-loss-window"],
            "distill-eval": ["--episodes", "--envs"],
            "distill-add-lives": ["--window"],
            "distill-quickstart": ["--states", "--steps", "--episodes"],
        }
        negative_ints = {  # counts that may be 0, and seeds: -1 is wrong
            "distill-teacher": ["--seed"], "distill-record": ["--projections", "--seed"],
            "distill-inspect": ["--seed"], "distill-train": ["--seed", "--split-seed"], "distill-eval": ["--seed"],
            "distill-quickstart": ["--seed"],
        }
        floats = {  # flag: (values that are wrong)
            "distill-teacher": {"--max-minutes": ("-1", "nan")},
            "distill-record": {"--epsilon": ("-1", "1.5", "nan"), "--temperature": ("0", "-1", "nan", "inf")},
            "distill-train": {"--alpha": ("-1", "nan", "inf"), "--fraction": ("0", "1.5", "nan"),
                              "--lr": ("0", "-1", "nan", "inf"), "--lr-warmup": ("-1", "1.5", "nan"),
                              "--alpha-until": ("0", "1.5", "nan"), "--life-loss-weight": ("-1", "nan", "inf")},
            "distill-eval": {"--temperature": ("0", "-1", "nan")},
            "distill-quickstart": {"--fraction": ("0", "1.5", "nan")},
        }
        cases = []
        for prog, flags in ints_below_1.items():
            cases += [(f"{prog} {flag} {v}", [*base[prog], flag, v], flag) for flag in flags for v in ("0", "-1")]
        for prog, flags in negative_ints.items():
            cases += [(f"{prog} {flag} -1", [*base[prog], flag, "-1"], flag) for flag in flags]
        for prog, table in floats.items():
            cases += [(f"{prog} {flag} {v}", [*base[prog], flag, v], flag) for flag, values in table.items()
                      for v in values]
        cases += [
            ("distill-train --dataset missing", self.train_cmd(missing, scratch / "run", "--force"), missing.name),
            ("distill-inspect missing file", cli("inspect", missing), missing.name),
            ("distill-add-lives missing file", cli("add_lives", missing), missing.name),
            ("distill-eval --student missing", cli("evaluate", "--student", self.work / "no-run", "--episodes", 1),
             "no-run"),
            ("distill-eval --dataset missing", cli("evaluate", "--student", run_dir, "--dataset", missing),
             missing.name),
            ("distill-record --teacher missing", self.record_cmd(scratch / "rec.h5", "--teacher",
                                                                 self.work / "no-teacher.zip", "--force"),
             "no-teacher.zip"),
            ("distill-record --codec unknown", self.record_cmd(scratch / "rec.h5", "--codec", "brotli", "--force"),
             "brotli"),
            ("distill-record --out under a file", self.record_cmd(rec / "x.h5"), rec.name),
            ("distill-train --out under a file", self.train_cmd(rec, rec / "run"), rec.name),
            ("distill-train --dataset not HDF5", self.train_cmd(ROOT / "README.md", scratch / "run"), "README.md"),
        ]
        return cases

    def bad_flags(self) -> None:
        cases = self.bad_flag_cases()
        logs = [self.logs / f"flag-{i:03d}.log" for i in range(len(cases))]
        with ThreadPoolExecutor(2) as pool:  # each one mostly waits for imports
            results = list(pool.map(lambda c: run(c[0][1], c[1], timeout=300), zip(cases, logs)))
        for (what, _, named), (rc, err) in zip(cases, results):
            outcome, detail = classify(rc, err)
            if outcome == "ok":
                outcome, detail = "silent wrong", "exit 0: the bad value was accepted"
            elif outcome == "clean error" and named not in detail:  # an error, but not about what was wrong
                outcome, detail = "silent wrong", f"the error does not name {named}: {detail}"
            self.add("bad flag", what, outcome, detail)
        shutil.rmtree(self.work / "bad-flag-scratch", ignore_errors=True)

    # -- the table --------------------------------------------------------------------------------------------------
    def table(self) -> str:
        families = list(dict.fromkeys(t["family"] for t in self.trials))
        head = ("| family | trials | ok | clean one-line errors | tracebacks | silent wrong | states lost | "
                "states duplicated | orphaned processes |")
        rows = [head, "|" + "---|" * 9]

        def row(name, trials):
            count = {o: sum(t["outcome"] == o for t in trials) for o in OUTCOMES}
            return (f"| {name} | {len(trials)} | {count['ok']} | {count['clean error']} | {count['traceback']} | "
                    f"{count['silent wrong']} | {sum(t['lost'] for t in trials)} | "
                    f"{sum(t['duplicated'] for t in trials)} | {sum(t['orphans'] for t in trials)} |")
        rows += [row(f, [t for t in self.trials if t["family"] == f]) for f in families]
        rows.append(row("**all**", self.trials))
        return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("docs/fault-matrix"), help="where trials.jsonl and table.md go")
    p.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    p.add_argument("--states", type=int, default=1200, help="states of the recording the trials damage")
    p.add_argument("--kills", type=int, default=20, help="kill -9 trials of recording and of training, each")
    p.add_argument("--flips", type=int, default=20, help="byte-flipped files")
    p.add_argument("--cuts", type=int, default=10, help="truncated recordings, and byte-flipped checkpoints")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments, byte positions and lengths")
    p.add_argument("--only", nargs="*", default=None,
                   help="families to run (kill-record kill-train flip cut checkpoint-flip full-disk wrong-teacher "
                        "bad-flag)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="fault-matrix-"))
    work.mkdir(parents=True, exist_ok=True)
    matrix = Matrix(work, args.out, args.states, args.seed)
    start = time.time()
    matrix.prepare()
    families = {"kill-record": lambda: matrix.kill_record(args.kills), "kill-train": lambda: matrix.kill_train(args.kills),
                "flip": lambda: matrix.byte_flips(args.flips), "cut": lambda: matrix.truncations(args.cuts),
                "checkpoint-flip": lambda: matrix.checkpoint_flips(args.cuts),
                "full-disk": matrix.full_disk, "wrong-teacher": matrix.wrong_teacher, "bad-flag": matrix.bad_flags}
    for name, family in families.items():
        if args.only is None or name in args.only:
            family()
    table = matrix.table()
    header = (f"Fault matrix: `python scripts/fault_matrix.py --seed {args.seed}` ({args.states}-state recording, "
              f"{len(matrix.trials)} trials, {(time.time() - start) / 60:.1f} min, {os.cpu_count()} CPU cores)\n\n")
    (args.out / "table.md").write_text(header + table + "\n")
    print("\n" + header + table)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
