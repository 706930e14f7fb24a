"""Open and check recorded HDF5 datasets: the one place that knows what a valid recording is."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from distill.environment.errors import UserError

try:
    import hdf5plugin  # noqa: F401  (registers the zstd/lz4/blosc filters for reading)
except ImportError:  # only recordings written with --codec gzip, lzf or none can be read then
    hdf5plugin = None

SCHEMA_VERSION = 1
EPISODE_FIELDS = ("start", "length", "return", "complete")
LIVES_MEANING = "lives left after the state's action (ALE), as the game reported it"
BUILTIN_CODECS = ("gzip", "lzf", "none")  # need no hdf5plugin to write or read

REQUIRED = ("obs", "logits", "actions", "episode", "committed", "episodes")
GRADIENTS = ("proj_dirs", "proj_grads")  # absent from gradient-free recordings (--projections 0) only


def has_gradients(attrs) -> bool:
    """Whether a recording (its attributes: ``f.attrs`` or a dict of them) holds directions and projected gradients
    (K > 0), so that Sobolev training on recorded directions can use it."""
    return int(attrs.get("projections", 1)) > 0


def no_gradients_error(path: str | Path, attrs) -> UserError:
    """The one-line refusal of Sobolev training on recorded directions from a gradient-free recording."""
    return UserError(f"{path} holds no input gradients (recorded with --projections 0): pass --teacher "
                     f"{attrs['teacher_path']} to draw them from the live teacher, or train with --alpha 0")


def open_recording(path: str | Path, require_complete: bool = True) -> h5py.File:
    """Open a recording read-only, refusing missing, corrupt, foreign or incomplete files with a clear error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"recording {path} not found; make one with `distill-record --game GAME`")
    try:
        f = h5py.File(path, "r", libver="latest", swmr=True)
    except OSError as exc:
        raise UserError(f"{path} is not a readable HDF5 file ({exc}); it may be corrupt: record it again") from None
    missing = [name for name in REQUIRED if name not in f]
    if "projections" in f.attrs and has_gradients(f.attrs):
        missing += [name for name in GRADIENTS if name not in f]
    if missing or "schema_version" not in f.attrs:
        f.close()
        raise UserError(f"{path} is not a sobolev-distill recording (missing {', '.join(missing) or 'attributes'})")
    if int(f.attrs["schema_version"]) != SCHEMA_VERSION:
        version = int(f.attrs["schema_version"])
        f.close()
        raise UserError(f"{path} has schema version {version}; this version of the toolkit reads {SCHEMA_VERSION}")
    codec = str(f.attrs.get("codec", "zstd"))
    if hdf5plugin is None and codec not in BUILTIN_CODECS:
        f.close()
        raise UserError(f"{path} is compressed with {codec}, which needs the hdf5plugin package: "
                        "`pip install hdf5plugin`")
    if require_complete and not bool(f.attrs.get("complete", False)):
        n = int(f["committed"][0])
        target = int(f.attrs.get("target_states", 0))
        f.close()
        raise UserError(f"{path} is incomplete ({n} of {target} states); finish it with `distill-record --resume "
                        f"--out {path} --states {target}` (same settings), or use a complete recording")
    return f


def episode_table(f: h5py.File) -> dict[str, np.ndarray]:
    n_eps = int(f["n_episodes"][0])
    return {name: f["episodes"][name][:n_eps] for name in EPISODE_FIELDS}


def summary(path: str | Path) -> dict:
    """What ``distill-inspect`` prints: provenance, sizes, compression, scores, completeness."""
    path = Path(path)
    with open_recording(path, require_complete=False) as f:
        n = int(f["committed"][0])
        eps = episode_table(f)
        per_state = [k for k in ("obs", "logits", "actions", "episode", *GRADIENTS) if k in f]
        raw = sum(int(np.prod(f[k].shape)) * f[k].dtype.itemsize for k in per_state)
        compressed = [k for k in ("obs", "proj_grads") if k in f]
        stored = {k: f[k].id.get_storage_size() for k in compressed}
        raw_parts = {k: int(np.prod(f[k].shape)) * f[k].dtype.itemsize for k in compressed}
        done = eps["complete"].astype(bool)
        return {
            "path": str(path), "game": str(f.attrs["game"]), "teacher_sha256": str(f.attrs["teacher_sha256"]),
            "teacher_path": str(f.attrs["teacher_path"]), "states": n, "target_states": int(f.attrs["target_states"]),
            "complete": bool(f.attrs["complete"]), "episodes": len(eps["start"]), "complete_episodes": int(done.sum()),
            "mean_score_complete_episodes": float(eps["return"][done].mean()) if done.any() else None,
            "projections": int(f.attrs["projections"]), "grad_dtype": str(f.attrs["grad_dtype"]),
            "behaviour": str(f.attrs["behaviour"]), "codec": str(f.attrs["codec"]), "lives_stored": "lives" in f,
            "file_bytes": os.path.getsize(path), "bytes_per_state": os.path.getsize(path) / max(n, 1),
            "raw_bytes": raw,
            "compression_obs": raw_parts["obs"] / max(stored["obs"], 1),
            "compression_grads": (raw_parts["proj_grads"] / max(stored["proj_grads"], 1)
                                  if "proj_grads" in stored else None),
        }


def find_latest_recording(game: str, data_dir: Path = Path("data"), needs_gradients: bool = False) -> Path:
    """Newest complete recording of ``game`` anywhere under ``data_dir``; with ``needs_gradients``, the newest that
    holds input gradients (Sobolev training on recorded directions cannot use a gradient-free one).

    Each file's own attributes decide: its ``game`` (not its name, which the user may have chosen freely) and when
    it was finished (not its modification time, which a copy or a read-write open changes).
    """
    found: list[tuple[str, float, Path]] = []
    gradient_free = 0
    for path in sorted(data_dir.rglob("*.h5")):
        try:
            f = open_recording(path)
        except UserError:
            continue  # incomplete, corrupt or not a recording: never chosen
        with f:
            if str(f.attrs["game"]) != game:
                continue
            if needs_gradients and not has_gradients(f.attrs):
                gradient_free += 1
                continue
            found.append((str(f.attrs.get("finished", "")), path.stat().st_mtime, path))
    if not found and gradient_free:
        raise UserError(f"the recordings of {game} under {data_dir} hold no input gradients (--projections 0); pass "
                        f"--teacher {game} to draw them from the live teacher, train with --alpha 0, or record with "
                        f"`distill-record --game {game}`")
    if not found:
        raise UserError(f"no complete recording of {game} under {data_dir}; make one with "
                        f"`distill-record --game {game}` or pass --dataset FILE")
    return max(found)[2]
