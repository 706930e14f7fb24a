"""Open and check recorded HDF5 datasets: the one place that knows what a valid recording is."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np
import torch

from distill.environment.errors import UserError
from distill.recording.repair import stored_end_of_file, superblock_checksum_ok

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
GRAD_SCALES = "proj_grad_scales"  # [N, K] float32, only in recordings whose gradients are stored as int8
# the per-state datasets, in file order; "lives" is absent from recordings made before it was stored
PER_STATE = ("obs", "logits", "actions", "episode", "proj_dirs", "proj_grads", GRAD_SCALES, "lives")
CHECKSUM = "fletcher32"  # the value of the `checksums` attribute of recordings whose chunks carry checksums
DAMAGED_FIX = "record it again (distill-record), or restore it from a copy"


ATTRIBUTES_DIGEST = "attributes_sha256"  # HDF5 keeps string attributes in a heap without checksums: this covers them


def attributes_digest(attrs) -> str:
    """sha256 of a recording's attributes (but the digest itself), so that a changed byte in one is detected."""
    def plain(value):
        return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value
    items = sorted((key, repr(plain(value))) for key, value in attrs.items() if key != ATTRIBUTES_DIGEST)
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def seal_attributes(f: h5py.File) -> None:
    """Store the digest of ``f``'s attributes: every writer of a recording's attributes calls it last."""
    f.attrs[ATTRIBUTES_DIGEST] = attributes_digest(f.attrs)


def has_checksums(attrs) -> bool:
    """Whether a recording's chunked datasets carry HDF5 Fletcher-32 checksums (recordings made before they were
    written do not: damage to their data cannot be detected, only its consequences)."""
    return str(attrs.get("checksums", "")) == CHECKSUM


def raised_by_h5py(exc: BaseException) -> bool:
    """Whether an exception comes from inside h5py (a read of damaged data or metadata), not from our own code."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return last is not None and "h5py" in Path(last).parts  # h5py/_selector.pyx, .../site-packages/h5py/...


def damaged_error(path: str | Path, exc: BaseException, where: str = "") -> UserError:
    """The one-line error for a recording that HDF5 cannot read: names the file, what failed and the way out."""
    text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    if "letcher" in text or "filter returned failure" in text:
        cause = "a stored chunk fails its checksum or cannot be decompressed (its bytes changed on disk)"
    else:
        cause = f"HDF5: {text}"
    return UserError(f"{path} is damaged{f' ({where})' if where else ''}: {cause}; {DAMAGED_FIX}")


class RecordingFile(h5py.File):
    """An h5py file whose reads of damaged data end its ``with`` block in a one-line :class:`UserError` (naming
    the file) instead of an h5py traceback. Errors of the caller's own code pass through unchanged."""

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            super().__exit__(exc_type, exc, tb)
        except Exception:  # closing a damaged file can fail too: the first error is the one to report
            pass
        if exc is not None and isinstance(exc, (OSError, RuntimeError, KeyError, ValueError)) and raised_by_h5py(exc):
            raise damaged_error(self._path, exc) from None


def first_damaged_rows(dataset: h5py.Dataset, lo: int = 0, hi: int | None = None) -> tuple[int, int] | None:
    """The first chunk-aligned row range in ``[lo, hi)`` of ``dataset`` that cannot be read (checksum or codec
    failure), or None: run only after a read has failed, to say where."""
    hi = dataset.shape[0] if hi is None else hi
    step = dataset.chunks[0] if dataset.chunks else max(hi - lo, 1)
    start = lo - lo % step
    while start < hi:
        end = min(start + step, dataset.shape[0])
        try:
            dataset[start:end]
        except (OSError, RuntimeError, ValueError):
            return max(start, lo), min(end, hi)
        start = end
    return None


def read_range(dataset: h5py.Dataset, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """``dataset[lo:hi]``, or a one-line error naming the file, the dataset and the first damaged rows."""
    try:
        return dataset[lo:hi]
    except (OSError, RuntimeError, ValueError) as exc:
        if not raised_by_h5py(exc):
            raise
        raise dataset_damaged(dataset, exc, lo, dataset.shape[0] if hi is None else hi) from None


def dataset_damaged(dataset: h5py.Dataset, exc: BaseException, lo: int, hi: int) -> UserError:
    """The error for a failed read of rows ``[lo, hi)`` of ``dataset``, with the first damaged row range located."""
    try:
        bad = first_damaged_rows(dataset, lo, hi)
    except Exception:  # noqa: BLE001 -- locating the damage is a courtesy; the error below is what matters
        bad = None
    where = dataset.name.lstrip("/") + (f", rows {bad[0]}-{bad[1] - 1}" if bad else "")
    return damaged_error(dataset.file.filename, exc, where)


def require_finite(path: str | Path, name: str, values: np.ndarray, rows: np.ndarray | None = None) -> None:
    """Refuse non-finite recorded values (NaN or infinity) with a one-line error naming the dataset and rows:
    training on them would end in a NaN loss far from the cause."""
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1) if len(values) else np.zeros(0, bool)
    if bad.any():
        where = np.flatnonzero(bad)
        named = (rows[where] if rows is not None else where)[:5]
        more = f" and {int(bad.sum()) - len(named)} more" if bad.sum() > len(named) else ""
        raise UserError(f"{path}: {name} holds non-finite values (NaN or infinity) at row(s) "
                        f"{', '.join(str(int(r)) for r in named)}{more}; the file is damaged: {DAMAGED_FIX}")


def open_for_reading(path: str | Path, cls: type[h5py.File] = h5py.File) -> h5py.File:
    """Open an HDF5 file read-only: as a plain reader first, and as a SWMR reader only when a writer has it open
    (or was killed with it open). A SWMR reader retries failed metadata reads for minutes, so a damaged file must
    fail in the plain reader first, and a SWMR reader is used only on a file whose superblock is intact."""
    try:
        return cls(path, "r", libver="latest")
    except OSError as exc:
        if "already open for write" not in str(exc) and "lock" not in str(exc).lower():
            raise
    try:
        intact = superblock_checksum_ok(path)
    except ValueError:
        intact = False
    if not intact:
        raise OSError("its superblock fails its checksum")
    return cls(path, "r", libver="latest", swmr=True)


def quantize_gradients(grads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 storage of gradient maps ``[B, K, ...]``: each map is scaled by its own largest magnitude over 127 and
    rounded, which keeps every map's direction (cosine about 0.9994 on Breakout) in a quarter of float32's bytes,
    and zstd shrinks the many small values further. Returns ``(int8 values, float32 scales [B, K])``; an all-zero
    map gets scale 0."""
    grads = np.asarray(grads, dtype=np.float32)
    scales = np.abs(grads).reshape(*grads.shape[:2], -1).max(axis=2) / 127.0
    safe = np.where(scales > 0, scales, 1.0)[(...,) + (None,) * (grads.ndim - 2)]
    return np.rint(grads / safe).astype(np.int8), scales.astype(np.float32)


def decode_gradients(stored: torch.Tensor, scales: torch.Tensor | None) -> torch.Tensor:
    """Stored gradient maps ``[B, K, ...]`` as float32: float16/32 as they are, int8 times their per-map scales."""
    if scales is None:
        return stored.float()
    return stored.float() * scales.float()[(...,) + (None,) * (stored.dim() - 2)]


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
    size, stored_size = path.stat().st_size, stored_end_of_file(path)
    if stored_size is not None and size < stored_size:
        raise UserError(f"{path} is truncated ({size} of {stored_size} bytes): a copy or download stopped early: "
                        "copy it again, or record it again (distill-record)")
    try:
        f = open_for_reading(path, RecordingFile)
        f._path = path
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a readable HDF5 file ({size} bytes; {first}): it is damaged, truncated or "
                        f"not a recording: {DAMAGED_FIX}") from None
    try:
        return _checked(f, path, require_complete)
    except UserError:
        f.close()
        raise
    except (OSError, RuntimeError, KeyError, ValueError) as exc:  # damaged metadata: attributes, the episode table
        f.close()
        if not raised_by_h5py(exc):
            raise
        raise damaged_error(path, exc) from None


def _checked(f: h5py.File, path: Path, require_complete: bool) -> h5py.File:
    """``f`` if it is a recording this version reads (closing it is the caller's business on error)."""
    stored = f.attrs.get(ATTRIBUTES_DIGEST)
    if stored is not None and str(stored) != attributes_digest(f.attrs):
        raise UserError(f"{path} is damaged (its attributes fail their checksum: bytes of its metadata changed on "
                        f"disk); {DAMAGED_FIX}")
    missing = [name for name in REQUIRED if name not in f]
    if "projections" in f.attrs and has_gradients(f.attrs):
        missing += [name for name in GRADIENTS if name not in f]
        if str(f.attrs.get("grad_dtype", "")) == "int8" and GRAD_SCALES not in f:
            missing.append(GRAD_SCALES)
    if missing or "schema_version" not in f.attrs:
        raise UserError(f"{path} is not a sobolev-distill recording (missing {', '.join(missing) or 'attributes'})")
    if int(f.attrs["schema_version"]) != SCHEMA_VERSION:
        version = int(f.attrs["schema_version"])
        raise UserError(f"{path} has schema version {version}; this version of the toolkit reads {SCHEMA_VERSION}")
    codec = str(f.attrs.get("codec", "zstd"))
    if hdf5plugin is None and codec not in BUILTIN_CODECS:
        raise UserError(f"{path} is compressed with {codec}, which needs the hdf5plugin package: "
                        "`pip install hdf5plugin`")
    if require_complete and not bool(f.attrs.get("complete", False)):
        n = int(f["committed"][0])
        target = int(f.attrs.get("target_states", 0))
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
        checksums = has_checksums(f.attrs)
        per_state = [k for k in ("obs", "logits", "actions", "episode", *GRADIENTS, GRAD_SCALES) if k in f]
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
            "checksums": CHECKSUM if checksums else None,
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
