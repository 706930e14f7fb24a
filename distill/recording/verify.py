"""Check a recording: its structure, its values, its checksums, and its logits and gradients against the teacher.

``distill-inspect --verify`` runs :func:`verify_recording` on a random sample of states (fast), ``--verify all`` on
every state (a full read of the file, which also checks every chunk's checksum). Each check ends ``ok`` or with a
message; a recording passes only when every check does. The tolerances are stated here and in the CLI's help.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from distill.environment.errors import UserError
from distill.recording.schema import (EPISODE_FIELDS, GRAD_SCALES, PER_STATE, dataset_damaged, decode_gradients,
                                      episode_table, first_damaged_rows, has_checksums, has_gradients, open_recording,
                                      read_range)

LOGIT_TOLERANCE = 1e-3  # largest absolute difference of a stored logit from the teacher's, recomputed
# largest per-state relative L2 error of a stored projected gradient from the recomputed one, by stored dtype:
# float16 rounding alone gives about 3e-4; the margin covers another device or thread count; int8 rounding gives
# about 0.035 on average and up to about 0.06 per state on Breakout (scripts/bench_grad_storage.py)
GRAD_TOLERANCE = {"float16": 1e-2, "float32": 1e-3, "int8": 0.15}
DIRECTION_TOLERANCE = 1e-4  # largest | ||v|| - 1 | of a stored direction
BLOCK = 64  # states recomputed by the teacher at a time
CHECK_ALL = "--verify all"


def _structure(f: h5py.File) -> list[str]:
    """Problems with the row counts and the episode table (read in full: they are small)."""
    problems = []
    n = int(f["committed"][0])
    present = [k for k in PER_STATE if k in f]
    short = [k for k in present if f[k].shape[0] < n]
    if short:
        problems.append(f"committed says {n} states but {', '.join(short)} hold(s) fewer rows")
    if bool(f.attrs.get("complete", False)):
        longer = [k for k in present if f[k].shape[0] != n]
        if longer:
            problems.append(f"a complete recording of {n} states, but {', '.join(longer)} hold(s) another row count")
        if n != int(f.attrs.get("target_states", n)):
            problems.append(f"marked complete with {n} states, but its target is {int(f.attrs['target_states'])}")
    if short:
        return problems
    eps = episode_table(f)
    if any(len(eps[name]) != int(f["n_episodes"][0]) for name in EPISODE_FIELDS):
        problems.append("the episode table's columns do not all hold n_episodes rows")
        return problems
    episode = read_range(f["episode"], 0, n)
    n_eps = len(eps["start"])
    if n and (episode.min() < 0 or episode.max() >= n_eps):
        problems.append(f"episode ids outside 0..{n_eps - 1}")
        return problems
    counts = np.bincount(episode, minlength=n_eps)
    if not np.array_equal(counts, eps["length"]):
        first = int(np.flatnonzero(counts != eps["length"])[0])
        problems.append(f"episode {first} has {int(counts[first])} states but the table says {int(eps['length'][first])}")
    seen = counts > 0
    first_rows = np.full(n_eps, n)
    np.minimum.at(first_rows, episode, np.arange(n))  # the lowest row of each episode
    if not np.array_equal(first_rows[seen], eps["start"][seen]):
        first = int(np.flatnonzero(first_rows[seen] != eps["start"][seen])[0])
        problems.append(f"episode {int(np.flatnonzero(seen)[first])} starts at row {int(first_rows[seen][first])} "
                        f"but the table says {int(eps['start'][seen][first])}")
    actions = read_range(f["actions"], 0, n)
    n_actions = int(f.attrs["n_actions"])
    if n and (actions.min() < 0 or actions.max() >= n_actions):
        problems.append(f"actions outside 0..{n_actions - 1}")
    if not np.isfinite(eps["return"]).all():
        problems.append("non-finite episode returns")
    return problems


def _nonfinite_rows(values: np.ndarray, offset: int = 0) -> list[int]:
    return (np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1)) + offset).tolist()


def _scan(f: h5py.File, n: int, progress: bool) -> tuple[list[str], dict[str, list[int]]]:
    """Read every chunk of every per-state dataset: the first damaged row range of each, and non-finite rows."""
    damaged, nonfinite = [], {}
    names = [k for k in PER_STATE if k in f]
    total = sum(min(n, f[k].shape[0]) for k in names)
    bar = tqdm(total=total, desc="verify: read every chunk", unit="row", unit_scale=True, disable=not progress,
               dynamic_ncols=True, mininterval=1.0)
    for name in names:
        ds = f[name]
        end = min(n, ds.shape[0])
        step = max(ds.chunks[0] if ds.chunks else 4096, 1) * max(1, 1024 // (ds.chunks[0] if ds.chunks else 1024))
        bad_rows: list[int] = []
        for lo in range(0, end, step):
            hi = min(lo + step, end)
            try:
                block = ds[lo:hi]
            except (OSError, RuntimeError, ValueError):
                bad = first_damaged_rows(ds, lo, hi)
                damaged.append(f"{name}, rows {bad[0]}-{bad[1] - 1}" if bad else f"{name}, rows {lo}-{hi - 1}")
                break  # the first damaged range of each dataset is named; record the file again either way
            finally:
                bar.update(hi - lo)
            if block.dtype.kind == "f":
                bad_rows += _nonfinite_rows(block, lo)
        if bad_rows:
            nonfinite[name] = bad_rows
    bar.close()
    return damaged, nonfinite


def verify_recording(path: str | Path, teacher_spec: str | None = None, samples: int | None = 64, seed: int = 0,
                     device: torch.device = torch.device("cpu"), trust_checkpoint: bool = False,
                     progress: bool = True) -> dict:
    """Check ``path``: ``samples`` random states against the teacher, or every state with ``samples=None``.

    Returns the largest errors, each check's outcome (``"ok"`` or what is wrong) and the list of failures; a
    damaged chunk met while reading a sample is a one-line :class:`UserError` (``--verify all`` lists them).
    """
    from distill.sobolev import input_gradients
    from teachers.load import load_teacher

    path = Path(path)
    checks: dict[str, str] = {}
    with open_recording(path, require_complete=False) as f:
        n = int(f["committed"][0])
        if n == 0:
            raise UserError(f"{path} holds no states yet")
        attrs = dict(f.attrs)
        teacher = load_teacher(teacher_spec or str(attrs["teacher_path"]), game=str(attrs["game"]), device=device,
                               trust_checkpoint=trust_checkpoint)
        if teacher.sha256 != str(attrs["teacher_sha256"]):
            raise UserError(f"teacher {teacher.path} has sha256 {teacher.sha256[:12]}, but {path} was recorded with "
                            f"{str(attrs['teacher_sha256'])[:12]}; pass the recording's teacher with --teacher")
        problems = _structure(f)
        checks["structure"] = "ok" if not problems else "; ".join(problems)
        gradients = has_gradients(attrs)
        if samples is None:  # every chunk: checksums and finiteness everywhere
            damaged, nonfinite = _scan(f, n, progress)
            checks["checksums"] = ("ok" if not damaged else "chunks that fail their checksum: " + "; ".join(damaged)) \
                if has_checksums(attrs) else ("ok (no checksums: recorded before they were written)" if not damaged
                                               else "unreadable chunks: " + "; ".join(damaged))
            idx = np.arange(n)
        else:
            idx = np.sort(np.random.default_rng(seed).choice(n, size=min(samples, n), replace=False))
            nonfinite = {}
            for name in ("logits", *(("proj_dirs",) if gradients else ())):  # small: read in full
                bad = _nonfinite_rows(read_range(f[name], 0, n))
                if bad:
                    nonfinite[name] = bad
            damaged = []
            checks["checksums"] = (f"ok on the rows read ({CHECK_ALL} checks every chunk)" if has_checksums(attrs)
                                   else "none: recorded before checksums were written, damage cannot be detected")
        if gradients and "proj_dirs" not in nonfinite and not damaged:
            norms = np.linalg.norm(read_range(f["proj_dirs"], 0, n).astype(np.float64), axis=-1)
            off = np.flatnonzero((np.abs(norms - 1.0) > DIRECTION_TOLERANCE).any(axis=1))
            checks["directions"] = "ok" if not len(off) else (f"{len(off)} state(s) with directions not of unit "
                                                              f"length, first row {int(off[0])}")
        if not damaged:  # the teacher, recomputed on the chosen states
            logit_err, grad_err, worst_row = 0.0, (0.0 if gradients else None), 0
            bar = tqdm(total=len(idx), desc="verify: recompute with the teacher", unit="state", unit_scale=True,
                       disable=not progress or len(idx) <= BLOCK, dynamic_ncols=True, mininterval=1.0)
            for start in range(0, len(idx), BLOCK):
                rows = idx[start:start + BLOCK]
                obs = _read_rows(f["obs"], rows)
                stored_logits = _read_rows(f["logits"], rows)
                x = torch.as_tensor(obs).float().div(255).to(device).requires_grad_(True)
                fresh_logits = teacher(x)
                diff = np.abs(fresh_logits.detach().cpu().numpy() - stored_logits)
                if np.isfinite(diff).all():
                    logit_err = max(logit_err, float(diff.max()))
                if gradients:
                    dirs, grads = _read_rows(f["proj_dirs"], rows), _read_rows(f["proj_grads"], rows)
                    scales = _read_rows(f[GRAD_SCALES], rows) if GRAD_SCALES in f else None
                    if samples is not None:  # int8 maps can be non-finite only through their scales
                        for name, values in (("proj_grads", grads), (GRAD_SCALES, scales)):
                            bad = [] if values is None else _nonfinite_rows(values)
                            if bad:
                                nonfinite.setdefault(name, []).extend(int(rows[b]) for b in bad)
                    fresh = input_gradients(torch.log_softmax(fresh_logits.float(), 1), x,
                                            torch.as_tensor(dirs).to(device), create_graph=False).cpu().double()
                    grads = decode_gradients(torch.as_tensor(grads),
                                             None if scales is None else torch.as_tensor(scales)).numpy()
                    rel = ((torch.as_tensor(grads.astype(np.float64)) - fresh).flatten(2).norm(dim=2)
                           / fresh.flatten(2).norm(dim=2).clamp_min(1e-12)).amax(dim=1).numpy()
                    finite = np.isfinite(rel)
                    if finite.any() and rel[finite].max() > grad_err:
                        grad_err = float(rel[finite].max())
                        worst_row = int(rows[finite][rel[finite].argmax()])
                bar.update(len(rows))
            bar.close()
            checks["logits"] = "ok" if logit_err <= LOGIT_TOLERANCE else (
                f"stored logits differ from the teacher's by up to {logit_err:.2e} (tolerance {LOGIT_TOLERANCE:g})")
            if gradients:
                tol = GRAD_TOLERANCE[str(attrs["grad_dtype"])]
                checks["gradients"] = "ok" if grad_err <= tol else (
                    f"stored gradients differ from the teacher's by up to {grad_err:.2e} relative, at row {worst_row} "
                    f"(tolerance {tol:g} for {attrs['grad_dtype']})")
        else:
            logit_err, grad_err = None, None
            checks["logits"] = "not recomputed: the file is damaged"
    checks["finite values"] = "ok" if not nonfinite else "; ".join(
        f"{name} at row(s) {', '.join(map(str, rows[:5]))}{f' and {len(rows) - 5} more' if len(rows) > 5 else ''}"
        for name, rows in nonfinite.items())
    failures = [f"{name}: {outcome}" for name, outcome in checks.items() if not outcome.startswith("ok")
                and not (name == "checksums" and outcome.startswith("none"))]
    return {"verified_states": int(len(idx)), "verified_all": samples is None,
            "max_relative_grad_error": grad_err, "max_abs_logit_error": logit_err,
            "checks": checks, "failures": failures}


def _read_rows(dataset: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """Sorted ``rows`` of ``dataset`` (one contiguous read), or the one-line error naming the damaged rows."""
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    try:
        return dataset[lo:hi][rows - lo] if hi - lo <= 4 * len(rows) else dataset[rows]
    except (OSError, RuntimeError, ValueError) as exc:
        raise dataset_damaged(dataset, exc, lo, hi) from None
