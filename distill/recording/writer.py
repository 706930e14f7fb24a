"""Record teacher datasets: states, logits, actions and random-projection input gradients (DESIGN.md section 4).

For every state s played while following the teacher, the file stores the observation, the
teacher's logits, the action taken, the episode, and for k = 1..K a unit vector v_k (uniform
on the sphere of R^A) with ``grad_s <log_softmax(teacher(s)), v_k>`` taken with respect to
the scaled input ``obs / 255``. With K = 0 the file holds no directions and no gradients
(``proj_dirs`` and ``proj_grads`` are absent): about 220 times smaller and several times faster
to make, for KL-only students or for Sobolev students that draw directions from the live teacher
(``distill-train --teacher``).

Crash safety: the file is written in HDF5's single-writer/multiple-reader (SWMR) mode, which
keeps it readable at every instant, and a one-element dataset ``committed`` records how many
states are completely written. It is raised only after the rows it covers are flushed, so after
a ``kill -9`` (or a full disk) everything up to ``committed`` is valid; ``--resume`` truncates the
rest and continues. The ``complete`` attribute is set only when the requested size is reached.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from distill._version import __version__
from distill.environment import atari
from distill.environment.errors import StateLostError, UserError
from distill.recording.repair import clear_consistency_flags
from distill.recording.schema import (CHECKSUM, EPISODE_FIELDS, GRAD_SCALES, LIVES_MEANING, PER_STATE, SCHEMA_VERSION,
                                      open_for_reading, quantize_gradients, raised_by_h5py, seal_attributes)
from distill.sobolev import input_gradients, random_unit_vectors

# int8 maps carry a float32 scale per state and projection (schema.GRAD_SCALES); the teacher step hands them over as
# float32 and quantize_gradients rounds them
GRAD_DTYPES = {"float16": np.float16, "float32": np.float32, "int8": np.int8}
TORCH_GRAD_DTYPES = {"float16": torch.float16, "float32": torch.float32, "int8": torch.float32}
BEHAVIOURS = ("sample", "greedy")
CHUNK_STATES = 16  # states per HDF5 chunk: small enough for fast random reads, large enough to compress

# settings that must match for --resume to append to an existing file
RESUME_KEYS = ("game", "teacher_sha256", "projections", "grad_dtype", "behaviour", "epsilon", "schema_version")




def _hdf5plugin(codec: str):
    """hdf5plugin, imported only for the codecs that need it (so that gzip/lzf work where it is missing)."""
    try:
        import hdf5plugin
    except ImportError:
        raise UserError(f"codec {codec} needs the hdf5plugin package: `pip install hdf5plugin`, or choose "
                        f"--codec gzip or lzf") from None
    return hdf5plugin


def compression(codec: str = "zstd") -> dict:
    """h5py keyword arguments for a codec; zstd (through hdf5plugin) is the measured default."""
    if codec in ("zstd", "lz4", "blosc-zstd"):
        hdf5plugin = _hdf5plugin(codec)
    if codec == "zstd":
        return dict(hdf5plugin.Zstd(clevel=3))
    if codec == "lz4":
        return dict(hdf5plugin.LZ4())
    if codec == "blosc-zstd":
        return dict(hdf5plugin.Blosc(cname="zstd", clevel=3, shuffle=hdf5plugin.Blosc.SHUFFLE))
    if codec == "gzip":
        return {"compression": "gzip", "compression_opts": 4}
    if codec == "lzf":
        return {"compression": "lzf"}
    if codec == "none":
        return {}
    raise UserError(f"unknown codec {codec!r}; choose zstd, lz4, blosc-zstd, gzip, lzf or none")


@dataclass
class RecordConfig:
    """What a recording is: stored as file attributes, compared on resume."""

    game: str
    states: int = 100_000
    projections: int = 1
    grad_dtype: str = "int8"
    envs: int = 8
    seed: int = 0
    behaviour: str = "sample"
    epsilon: float = 0.0
    codec: str = "zstd"

    def validate(self) -> None:
        if self.states < 1:
            raise UserError(f"--states must be at least 1, got {self.states}")
        if self.projections < 0:
            raise UserError(f"--projections must be at least 0 (0: no gradients, for KL-only training or "
                            f"distill-train --teacher), got {self.projections}")
        if self.grad_dtype not in GRAD_DTYPES:
            raise UserError(f"--grad-dtype must be one of {', '.join(GRAD_DTYPES)}, got {self.grad_dtype!r}")
        if self.behaviour not in BEHAVIOURS:
            raise UserError(f"--behaviour must be sample or greedy, got {self.behaviour!r}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise UserError(f"--epsilon must be in [0, 1], got {self.epsilon}")
        if self.envs < 1:
            raise UserError(f"--envs must be at least 1, got {self.envs}")
        if self.seed < 0:
            raise UserError(f"--seed must be 0 or more, got {self.seed}")


def default_recording_path(game: str, data_dir: Path = Path("data")) -> Path:
    """Where ``distill-record --game G`` writes and ``distill-train --game G`` looks."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return data_dir / "recordings" / f"{atari.canonical_game(game).lower()}-{stamp}.h5"


# ---------------------------------------------------------------------------------------------
# the teacher step: one forward pass for the action and the gradients
# ---------------------------------------------------------------------------------------------
class TeacherPass:
    """The teacher's forward pass on one batch: logits ``[B, A]`` and directions ``[B, K, A]`` at once, and
    ``grad_s <log_softmax(teacher(s)), v_k>`` ``[B, K, 4, 84, 84]`` from :meth:`gradients`.

    The split lets a recording send the chosen actions to the games before the backward pass, which then runs while
    the games advance. The directions are drawn right after the forward pass, before the caller samples its actions
    from the same generator, as :func:`teacher_step` draws them.
    """

    def __init__(self, teacher: torch.nn.Module, obs: np.ndarray, k: int, generator: torch.Generator,
                 device: torch.device):
        self.k, self.batch = k, len(obs)
        if k == 0:  # no backward pass: directions and gradients are empty
            with torch.no_grad():
                self.logits = teacher(atari.scale_obs(obs).to(device)).float().cpu().numpy()
            self.dirs = np.zeros((self.batch, 0, self.logits.shape[1]), np.float32)
            return
        self._x = atari.scale_obs(obs).to(device).requires_grad_(True)
        logits = teacher(self._x)
        self._log_probs = torch.log_softmax(logits.float(), dim=1)
        self._dirs = random_unit_vectors(self.batch, k, self._log_probs.shape[1], generator=generator).to(device)
        self.logits = logits.detach().float().cpu().numpy()
        self.dirs = self._dirs.cpu().numpy()

    def gradients(self, grad_dtype: torch.dtype = torch.float32) -> np.ndarray:
        """The projected input gradients, cast to ``grad_dtype`` (torch's float16 cast is several times faster than
        numpy's); the graph is freed. Call once."""
        if self.k == 0:
            return np.zeros((self.batch, 0, *atari.OBS_SHAPE), np.float32)
        grads = input_gradients(self._log_probs, self._x, self._dirs, create_graph=False)
        del self._x, self._log_probs
        return grads.to(grad_dtype).cpu().numpy()


def teacher_step(teacher: torch.nn.Module, obs: np.ndarray, k: int, generator: torch.Generator,
                 device: torch.device, grad_dtype: torch.dtype = torch.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits ``[B, A]``, directions ``[B, K, A]`` and ``grad_s <log_softmax(teacher(s)), v_k>`` ``[B, K, 4, 84, 84]``.

    One forward pass serves the action choice and all K projections (:class:`TeacherPass`, whose backward pass runs
    at once here). With ``k = 0`` there is no backward pass and the directions and gradients are empty
    (``[B, 0, ...]``).
    """
    teacher_pass = TeacherPass(teacher, obs, k, generator, device)
    return teacher_pass.logits, teacher_pass.dirs, teacher_pass.gradients(grad_dtype)


# ---------------------------------------------------------------------------------------------
# file layout
# ---------------------------------------------------------------------------------------------
def _create_file(path: Path, cfg: RecordConfig, n_actions: int, teacher_path: str, teacher_sha: str) -> None:
    # every chunked dataset carries a Fletcher-32 checksum of each stored chunk (h5py puts the filter after the
    # compressor, so the checksum covers the bytes on disk and is checked before anything is decompressed)
    comp = {**compression(cfg.codec), "fletcher32": True}
    sums = {"fletcher32": True}
    k = cfg.projections
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("obs", (0, *atari.OBS_SHAPE), np.uint8, maxshape=(None, *atari.OBS_SHAPE),
                         chunks=(CHUNK_STATES, *atari.OBS_SHAPE), **comp)
        f.create_dataset("logits", (0, n_actions), np.float32, maxshape=(None, n_actions),
                         chunks=(1024, n_actions), **sums)
        f.create_dataset("actions", (0,), np.int64, maxshape=(None,), chunks=(4096,), **sums)
        f.create_dataset("episode", (0,), np.int32, maxshape=(None,), chunks=(4096,), **sums)
        if k > 0:  # a gradient-free recording (K = 0) has neither (HDF5 chunks cannot have a zero-sized axis)
            f.create_dataset("proj_dirs", (0, k, n_actions), np.float32, maxshape=(None, k, n_actions),
                             chunks=(1024, k, n_actions), **sums)
            f.create_dataset("proj_grads", (0, k, *atari.OBS_SHAPE), GRAD_DTYPES[cfg.grad_dtype],
                             maxshape=(None, k, *atari.OBS_SHAPE),
                             chunks=(max(1, CHUNK_STATES // k), k, *atari.OBS_SHAPE), **comp)
            if cfg.grad_dtype == "int8":
                f.create_dataset(GRAD_SCALES, (0, k), np.float32, maxshape=(None, k), chunks=(1024, k), **sums)
        lives = f.create_dataset("lives", (0,), np.int16, maxshape=(None,), chunks=(4096,), **sums)
        lives.attrs["meaning"] = LIVES_MEANING
        f.create_dataset("committed", data=np.zeros(1, np.int64))
        f.create_dataset("n_episodes", data=np.zeros(1, np.int64))
        eps = f.create_group("episodes")
        for name, dtype in zip(EPISODE_FIELDS, (np.int64, np.int64, np.float64, np.bool_)):
            eps.create_dataset(name, (0,), dtype, maxshape=(None,), chunks=(1024,), **sums)
        f.attrs.update({
            "checksums": CHECKSUM,
            "schema_version": SCHEMA_VERSION, "game": cfg.game, "env_id": atari.env_id(cfg.game),
            "env_settings": str(atari.env_settings(training=False)), "n_actions": n_actions,
            "teacher_path": teacher_path, "teacher_sha256": teacher_sha, "projections": k,
            "grad_dtype": cfg.grad_dtype, "behaviour": cfg.behaviour, "epsilon": cfg.epsilon, "seed": cfg.seed,
            "envs": cfg.envs, "codec": cfg.codec, "target_states": cfg.states, "package_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(), "complete": False, "resumes": 0,
            "gradient_of": "grad wrt obs/255 of <log_softmax(teacher(obs/255)), v>",
        })
        seal_attributes(f)


def read_committed(path: Path) -> int:
    with open_for_reading(path) as f:
        return int(f["committed"][0])


FREE_SPACE_MARGIN = 8 << 20  # bytes kept free beyond a flush's uncompressed size, for HDF5's metadata


class _Writer:
    """Appends steps to an open SWMR file; commits rows and the episode table at each flush."""

    def __init__(self, f: h5py.File):
        self.f = f
        self.n = int(f["committed"][0])
        # recordings made before lives were stored go on without them (distill-add-lives can replay them), and
        # gradient-free ones (K = 0) without directions and gradients
        self.buffers: dict[str, list[np.ndarray]] = {k: [] for k in PER_STATE if k in f}
        self.buffered = 0

    def add(self, **rows: np.ndarray) -> None:
        for key in self.buffers:
            self.buffers[key].append(rows[key])
        self.buffered += len(rows["actions"])

    def flush(self, episodes: dict[str, np.ndarray]) -> None:
        if self.buffered:
            # stop before HDF5 meets a full disk (a write failing inside HDF5 leaves its caches unclosable)
            need = sum(part.nbytes for parts in self.buffers.values() for part in parts) + FREE_SPACE_MARGIN
            if shutil.disk_usage(Path(self.f.filename).parent).free < need:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            new = self.n + self.buffered
            for key, parts in self.buffers.items():
                data = np.concatenate(parts)
                ds = self.f[key]
                ds.resize(new, axis=0)
                ds[self.n:new] = data
                ds.flush()
                parts.clear()
            self.n, self.buffered = new, 0
        n_eps = len(episodes["start"])
        for name in EPISODE_FIELDS:
            ds = self.f["episodes"][name]
            ds.resize(n_eps, axis=0)
            if n_eps:
                ds[:] = episodes[name]
            ds.flush()
        self.f["n_episodes"][0] = n_eps
        self.f["n_episodes"].flush()
        self.f["committed"][0] = self.n  # raised last: everything below it is on disk
        self.f["committed"].flush()


def _check_resume(path: Path, cfg: RecordConfig, teacher_sha: str) -> dict:
    try:
        with open_for_reading(path) as f:
            attrs = dict(f.attrs)
    except OSError as exc:
        raise UserError(f"cannot resume {path}: not a readable HDF5 recording ({exc}); pass --force to start over") from None
    wanted = {"game": cfg.game, "teacher_sha256": teacher_sha, "projections": cfg.projections,
              "grad_dtype": cfg.grad_dtype, "behaviour": cfg.behaviour, "epsilon": cfg.epsilon,
              "schema_version": SCHEMA_VERSION}
    for key in RESUME_KEYS:
        have = attrs.get(key)
        have = have.item() if hasattr(have, "item") else have
        if have != wanted[key]:
            raise UserError(f"--resume: {path} was recorded with {key}={have!r}, not {wanted[key]!r}; "
                            "use the same settings or another --out")
    return attrs


def _truncate_to_committed(path: Path) -> tuple[int, dict[str, np.ndarray]]:
    """Drop rows written after the last commit (a crash between write and commit)."""
    try:
        clear_consistency_flags(path)  # a killed SWMR writer leaves the file marked as open
        return _truncate(path)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise UserError(f"cannot resume {path}: it is damaged ({exc}); record it again with --force") from None


def _truncate(path: Path) -> tuple[int, dict[str, np.ndarray]]:
    with h5py.File(path, "a", libver="latest") as f:
        n = int(f["committed"][0])
        for key in (k for k in PER_STATE if k in f):
            if f[key].shape[0] != n:
                f[key].resize(n, axis=0)
        n_eps = int(f["n_episodes"][0])
        episodes = {name: f["episodes"][name][:n_eps] for name in EPISODE_FIELDS}
        for name in EPISODE_FIELDS:
            f["episodes"][name].resize(n_eps, axis=0)
        f.attrs["complete"] = False
        f.attrs["resumes"] = int(f.attrs.get("resumes", 0)) + 1
        seal_attributes(f)
        resumes = int(f.attrs["resumes"])
    # episodes that were being played when the recording stopped cannot be continued
    episodes["complete"] = episodes["complete"].astype(bool)
    return resumes, episodes


def record(cfg: RecordConfig, teacher, out: Path, resume: bool = False, force: bool = False,
           device: torch.device = torch.device("cpu"), progress: bool = True) -> Path:
    """Follow ``teacher`` until ``out`` holds ``cfg.states`` states; resumable after any interruption."""
    cfg.game = atari.canonical_game(cfg.game)
    cfg.validate()
    if teacher.game != cfg.game:
        raise UserError(f"the teacher plays {teacher.game}, not {cfg.game}; pass a teacher for {cfg.game}")
    out = Path(out)
    if out.exists() and not (resume or force):
        raise UserError(f"{out} already exists; pass --resume to continue it or --force to overwrite it")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create directory {out.parent}: {exc.strerror}; choose a writable --out") from None
    n_actions = teacher.n_actions
    resumes = 0
    episodes: dict[str, list] = {name: [] for name in EPISODE_FIELDS}
    if resume and out.exists():
        attrs = _check_resume(out, cfg, teacher.sha256)
        compression(str(attrs.get("codec", "zstd")))  # registers the file's filter (or says what to install)
        resumes, stored = _truncate_to_committed(out)
        episodes = {name: list(stored[name]) for name in EPISODE_FIELDS}
    else:
        partial = out.with_name(out.name + ".creating")
        try:  # made whole under another name, then renamed: a kill never leaves half a file at --out
            _create_file(partial, cfg, n_actions, teacher.path, teacher.sha256)
            partial.replace(out)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise UserError(f"cannot write {out}: {exc}; choose a writable --out") from None

    seed = cfg.seed + 100_003 * resumes  # fresh games after a resume, still reproducible
    venv = atari.make_vec_env(cfg.game, n_envs=cfg.envs, seed=seed, training=False, subprocesses=True)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    f = h5py.File(out, "a", libver="latest")
    f.swmr_mode = True
    writer = _Writer(f)
    start_n = writer.n
    obs = venv.reset()
    current = np.zeros(cfg.envs, dtype=np.int64)  # row in the episode table each env is playing

    def open_episode(env_index: int, first_state: int) -> None:
        current[env_index] = len(episodes["start"])
        for name, value in zip(EPISODE_FIELDS, (first_state, 0, 0.0, False)):
            episodes[name].append(value)

    loop_start = time.time()
    bar = tqdm(total=cfg.states, initial=start_n, desc=f"record {cfg.game}", unit="state", unit_scale=True,
               disable=not progress, dynamic_ncols=True, mininterval=1.0)
    last_flush = time.time()
    n_total = start_n
    started = np.zeros(cfg.envs, dtype=bool)
    failure: Exception | None = None
    close_failed = False
    try:
        while n_total < cfg.states:
            take = min(cfg.envs, cfg.states - n_total)
            teacher_pass = TeacherPass(teacher, obs[:take], cfg.projections, gen, device)
            logits = teacher_pass.logits
            probs = torch.softmax(torch.from_numpy(logits), dim=1)
            if cfg.behaviour == "greedy":
                chosen = probs.argmax(dim=1).numpy()
            else:
                chosen = torch.multinomial(probs, 1, generator=gen).squeeze(1).numpy()
            if cfg.epsilon > 0:
                explore = rng.random(take) < cfg.epsilon
                chosen = np.where(explore, rng.integers(0, n_actions, take), chosen)
            actions = np.zeros(cfg.envs, dtype=np.int64)
            actions[:take] = chosen
            # the games advance in their processes while this process writes the earlier rows, runs the teacher's
            # backward pass and prepares this step's rows
            venv.step_async(actions)
            if writer.buffered >= 256 or time.time() - last_flush > 5:
                # the rows of earlier steps, with the episode table as it stood after them
                writer.flush({k: np.asarray(v) for k, v in episodes.items()})
                last_flush = time.time()
            for i in range(take):
                if not started[i]:
                    open_episode(i, n_total + i)
                    started[i] = True
            grads = teacher_pass.gradients(TORCH_GRAD_DTYPES[cfg.grad_dtype])
            rows = dict(obs=obs[:take].copy(), logits=logits, actions=chosen.astype(np.int64),
                        episode=current[:take].astype(np.int32), proj_dirs=teacher_pass.dirs, proj_grads=grads)
            if cfg.grad_dtype == "int8" and cfg.projections > 0:
                rows["proj_grads"], rows[GRAD_SCALES] = quantize_gradients(grads)
            for i in range(take):
                episodes["length"][current[i]] += 1
            obs, rewards, dones, infos = venv.step_wait()
            rows["lives"] = np.array([int(info.get("lives", 0)) for info in infos[:take]], dtype=np.int16)
            writer.add(**rows)
            n_total += take
            for i in range(take):
                episodes["return"][current[i]] += float(rewards[i])
                if dones[i]:
                    episodes["complete"][current[i]] = True
                    started[i] = False
            bar.update(take)
        writer.flush({k: np.asarray(v) for k, v in episodes.items()})
    except (OSError, RuntimeError) as exc:  # a full disk, a lost mount: what was committed stays readable
        if not isinstance(exc, OSError) and not raised_by_h5py(exc):
            raise
        failure = exc
    finally:
        bar.close()
        venv.close()
        try:
            f.close()
        except (OSError, RuntimeError) as exc:  # closing flushes HDF5's caches, which can fail on a full disk too
            failure, close_failed = failure or exc, True
    if failure is not None:
        raise _write_failed(out, failure, writer.n, StateLostError if close_failed else UserError)
    loop_seconds = time.time() - loop_start
    try:
        with h5py.File(out, "a", libver="latest") as f:
            # steady-state speed of this invocation (environment construction excluded)
            f.attrs["last_run_states"] = n_total - start_n
            f.attrs["last_run_seconds"] = loop_seconds
            f.attrs["recording_seconds"] = float(f.attrs.get("recording_seconds", 0.0)) + loop_seconds
            f.attrs["complete"] = True
            f.attrs["target_states"] = cfg.states
            f.attrs["finished"] = datetime.now(timezone.utc).isoformat()
            seal_attributes(f)
    except OSError as exc:
        raise _write_failed(out, exc, writer.n) from None
    return out


def _write_failed(out: Path, exc: Exception, committed: int, kind: type[UserError] = UserError) -> UserError:
    """The one-line error for a failed write (HDF5's own message spans lines and names buffer addresses)."""
    errno_ = getattr(exc, "errno", None) or next(
        (code for code, name in ((28, "No space left"), (27, "File too large"), (122, "quota")) if name in str(exc)),
        None)
    reason = os.strerror(errno_) if errno_ else (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return kind(f"writing {out} failed ({reason}); the file is valid up to {committed} states: free space "
                     "and rerun the same command with --resume")
