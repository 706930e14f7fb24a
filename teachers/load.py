"""Load a teacher from any source people share (docs/usage.md, "Bring your own teacher").

Sources: a game name (the shipped teacher), a stable-baselines3 ``.zip``, an rl-baselines3-zoo run folder or
downloaded hub folder, a CleanRL Atari checkpoint (a state dict), a TorchScript file; in Python, any
``torch.nn.Module`` through :meth:`Teacher.from_module`.

Security: by default nothing from a file is unpickled or run. SB3 zips are rebuilt from their readable settings
(teachers/sb3.py), state dicts are read with ``torch.load(weights_only=True)``. ``trust_checkpoint=True``
(``--trust-checkpoint``) loads SB3 zips with SB3's own loader, which unpickles, i.e. runs, code stored in the file,
and allows TorchScript files, whose forward pass is a program stored in the file.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import torch

from distill.environment import atari
from distill.environment.errors import UserError
from teachers.teacher import DEFAULT_TEMPERATURE, Teacher, checked, file_sha256

SHIPPED_DIR = Path(__file__).resolve().parent / "checkpoints"
META_NAME = "sobolev_distill.json"  # extra member we add to .zip files we write; SB3 ignores it


def shipped_teacher_path(game: str) -> Path:
    """Path of the teacher shipped for ``game``; a clear error if the project ships none."""
    name = atari.canonical_game(game)
    found = sorted(SHIPPED_DIR.glob(f"{name.lower()}_*.zip"))  # <game>_<algo>.zip, one per game
    if not found:
        shipped = sorted(p.stem for p in SHIPPED_DIR.glob("*.zip"))
        raise UserError(f"no shipped teacher for {name} (shipped: {', '.join(shipped) or 'none'}); "
                        f"train one with `distill-teacher --game {name}` and pass --teacher PATH")
    return found[0]


def write_meta(zip_path: str | Path, meta: dict) -> None:
    """Store the game and provenance inside a checkpoint so the wrong game is caught on load."""
    with zipfile.ZipFile(zip_path, "a") as archive:
        if META_NAME in archive.namelist():
            raise UserError(f"{zip_path} already carries {META_NAME}")
        archive.writestr(META_NAME, json.dumps(meta, indent=2))


def read_meta(zip_path: str | Path) -> dict:
    """The metadata written by :func:`write_meta`, or ``{}`` for checkpoints made elsewhere."""
    with zipfile.ZipFile(zip_path) as archive:
        if META_NAME not in archive.namelist():
            return {}
        return json.loads(archive.read(META_NAME))


def _names_a_game(text: str) -> bool:
    """A bare name such as ``Breakout`` (no suffix, no folder, no such file) stands for a shipped teacher."""
    return "." not in Path(text).name and "/" not in text and not Path(text).exists()


def resolve_teacher_path(spec: str | Path | None, game: str) -> Path:
    """``None`` or a game name -> the shipped teacher; anything else is a path that must exist."""
    if spec is None:
        return shipped_teacher_path(game)
    text = str(spec)
    if text.startswith("module:"):
        raise UserError(f"the teacher was a Python module ({text}), not a file: pass it with --teacher PATH to a "
                        "checkpoint of it, or load it in Python with Teacher.from_module")
    if _names_a_game(text):
        return shipped_teacher_path(text)
    path = Path(text)
    if not path.exists():
        raise UserError(f"teacher {path} not found; pass an existing checkpoint (stable-baselines3 .zip, zoo or hub "
                        "folder, CleanRL model, TorchScript file) or a game name for a shipped teacher")
    return path


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zips with a ``code/`` folder and ``constants.pkl``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())


def _read_source(path: Path, trust: bool) -> tuple[torch.nn.Module, str, str, int, float, Path, str | None, list[str]]:
    """(network, kind, outputs, action count, input scale, file hashed, game it names, notes) for a file or folder."""
    from teachers import cleanrl, sb3, zoo

    if path.is_dir():
        found = zoo.read_zoo_folder(path)
        net, kind, outputs, n, scale = sb3.load_sb3(found.zip_path, trust)
        stored = read_meta(found.zip_path).get("game") or found.game
        return net, kind, outputs, n, scale, found.zip_path, stored, found.notes
    if path.suffix == ".zip" and not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a stable-baselines3 .zip checkpoint (not a zip archive: damaged or incomplete); "
                        "download or save it again")
    if sb3.is_sb3_zip(path):
        net, kind, outputs, n, scale = sb3.load_sb3(path, trust)
        return net, kind, outputs, n, scale, path, read_meta(path).get("game"), []
    if _is_torchscript(path):
        if not trust:
            raise UserError(f"{path} is a TorchScript program: its forward pass is code stored in the file; pass "
                            f"{sb3.TRUST_FLAG} (API: trust_checkpoint=True) if you trust it")
        try:
            with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript; its files still load
                warnings.simplefilter("ignore", DeprecationWarning)
                net = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise UserError(f"cannot read {path} as TorchScript ({type(exc).__name__}); the file is damaged") from None
        return net.eval(), "torchscript", "logits", -1, 1.0, path, None, []
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a checkpoint, damaged, or it holds objects that only unpickling would build
        raise UserError(f"{path} is not a teacher this toolkit reads safely (not a stable-baselines3 .zip, zoo folder, "
                        f"CleanRL state dict or TorchScript file: {type(exc).__name__}); for your own network, load it "
                        "in Python and use Teacher.from_module") from None
    if state and isinstance(state, dict) and "model" in state and cleanrl.looks_like_cleanrl(state["model"]):
        state = state["model"]
    if not cleanrl.looks_like_cleanrl(state):
        keys = ", ".join(list(state)[:3]) if isinstance(state, dict) else type(state).__name__
        raise UserError(f"{path} holds {keys}..., not a CleanRL Atari agent's state dict (network.0.weight, ...); for "
                        "your own network, load it in Python and use Teacher.from_module")
    net, kind, outputs, n = cleanrl.load_cleanrl(state, str(path))
    return net, kind, outputs, n, 1.0, path, None, []


def load_teacher(spec: str | Path | None, game: str | None = None, temperature: float = DEFAULT_TEMPERATURE,
                 device: str | torch.device = "cpu", trust_checkpoint: bool = False) -> Teacher:
    """Load a teacher by game name (shipped) or by path, refusing one that does not fit ``game``.

    ``game`` defaults to the game the source names (our metadata, a zoo config, a hub model card).
    ``trust_checkpoint`` runs code from the file (SB3's unpickling loader; TorchScript); leave it off for files
    you did not make.
    """
    if game is None and spec is not None and _names_a_game(str(spec)):
        game = str(spec)
    path = resolve_teacher_path(spec, game or "")
    if not 0 < temperature < float("inf"):  # NaN fails both comparisons
        raise UserError(f"--temperature must be a positive number, got {temperature}")
    network, kind, outputs, n, scale, hashed, stored_game, notes = _read_source(path, trust_checkpoint)
    if game is None:
        if stored_game is None:
            raise UserError(f"{path} does not say which game it plays; pass --game")
        game = stored_game
    game = atari.canonical_game(game)
    if stored_game is not None and atari.canonical_game(stored_game) != game:
        raise UserError(f"teacher {path} was trained on {stored_game}, not {game}; pass a teacher for {game} "
                        f"or --game {stored_game}")
    expected = atari.n_actions(game)
    if n not in (-1, expected):
        raise UserError(f"teacher {path} has {n} actions but {game} has {expected}; it was trained on another "
                        "game: pass a teacher for this game")
    teacher = Teacher(network, game, expected, file_sha256(hashed), str(path), kind, outputs, temperature, scale, notes)
    return checked(teacher.to(device))
