"""rl-baselines3-zoo run folders and downloaded hub folders: the model zip, the game, and how its preprocessing
differs from ours.

A zoo run folder (``logs/ppo/BreakoutNoFrameskip-v4_1/``) holds ``BreakoutNoFrameskip-v4.zip`` and a
``BreakoutNoFrameskip-v4/`` folder with ``args.yml``, ``config.yml`` and ``env_kwargs.yml``; a hub folder
(``sb3/ppo-BreakoutNoFrameskip-v4``) holds ``ppo-BreakoutNoFrameskip-v4.zip`` with ``config.yml``, ``env_kwargs.yml``
and a model card ``README.md``. The zoo writes its YAML from ordered dicts (``!!python/object/apply:`` tags); they
are read here with a safe loader that builds those tags as plain dicts and refuses any other Python tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.environment import atari
from distill.environment.errors import UserError

ATARI_WRAPPER = "stable_baselines3.common.atari_wrappers.AtariWrapper"
NOT_MODELS = ("train_eval_metrics.zip", "replay.zip")  # hub folders ship these beside the model
# AtariWrapper's arguments that change what the teacher saw, with SB3's defaults (our teachers use them too)
WRAPPER_DEFAULTS = {"noop_max": 30, "frame_skip": 4, "screen_size": 84, "terminal_on_life_loss": True}
ENV_ID = re.compile(r"(?:ALE/)?([A-Za-z]+?)(NoFrameskip-v4|-v\d)")


def _yaml_loader():
    import yaml

    class ZooLoader(yaml.SafeLoader):
        """Safe YAML plus the zoo's ``OrderedDict`` and tuple tags, built as dicts and lists."""

    def ordered_dict(loader, node):
        (pairs,) = loader.construct_sequence(node, deep=True) or ([],)
        return {key: value for key, value in pairs}

    ZooLoader.add_constructor("tag:yaml.org,2002:python/object/apply:collections.OrderedDict", ordered_dict)
    ZooLoader.add_constructor("tag:yaml.org,2002:python/tuple",
                              lambda loader, node: loader.construct_sequence(node, deep=True))
    return ZooLoader


def read_yaml(path: Path) -> dict:
    """A zoo YAML file as plain data; nothing in it is run."""
    import yaml

    try:
        data = yaml.load(path.read_text(), Loader=_yaml_loader())
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read {path} safely ({first}); it holds tags other than the zoo's ordered dicts") from None
    return data if isinstance(data, dict) else {}


def _find(folder: Path, name: str) -> Path | None:
    """``folder/name`` (hub) or ``folder/<env id>/name`` (zoo run)."""
    if (folder / name).is_file():
        return folder / name
    found = sorted(folder.glob(f"*/{name}"))
    return found[0] if found else None


def game_of_env_id(text: str) -> str | None:
    match = ENV_ID.search(text)
    if not match:
        return None
    try:
        return atari.canonical_game(match.group(1))
    except UserError:
        return None


@dataclass
class ZooModel:
    zip_path: Path
    game: str | None
    env_id: str | None
    notes: list[str] = field(default_factory=list)


def read_zoo_folder(folder: Path) -> ZooModel:
    """The model zip of a zoo or hub folder, the game its settings name, and every preprocessing difference."""
    args_path, config_path, env_kwargs_path = (_find(folder, n) for n in ("args.yml", "config.yml", "env_kwargs.yml"))
    env_id = None
    if args_path is not None:
        env_id = read_yaml(args_path).get("env")
    zips = sorted(p for p in folder.glob("*.zip") if p.name not in NOT_MODELS)
    if env_id and (folder / f"{env_id.split('/')[-1]}.zip").is_file():
        zip_path = folder / f"{env_id.split('/')[-1]}.zip"  # the zoo's final model, as its enjoy.py loads by default
    elif len([z for z in zips if z.name != "best_model.zip"]) == 1:
        zip_path = next(z for z in zips if z.name != "best_model.zip")
    elif len(zips) == 1:
        zip_path = zips[0]
    else:
        listed = ", ".join(z.name for z in zips) or "none"
        raise UserError(f"{folder} is not an rl-baselines3-zoo run or hub folder with one model .zip (found: {listed}); "
                        "pass the .zip itself")
    if not env_id:
        env_id = ENV_ID.search(zip_path.stem).group(0) if ENV_ID.search(zip_path.stem) else None
    if not env_id and (folder / "README.md").is_file():  # a hub model card names its environment
        match = ENV_ID.search((folder / "README.md").read_text(errors="replace"))
        env_id = match.group(0) if match else None
    game = game_of_env_id(env_id) if env_id else None
    notes = preprocessing_notes(env_id, read_yaml(config_path) if config_path else None,
                                read_yaml(env_kwargs_path) if env_kwargs_path else {})
    return ZooModel(zip_path, game, env_id, notes)


def _wrappers(config: dict) -> list[tuple[str, dict]]:
    entries = config.get("env_wrapper") or []
    if isinstance(entries, (str, dict)):
        entries = [entries]
    out = []
    for entry in entries:
        if isinstance(entry, str):
            out.append((entry, {}))
        elif isinstance(entry, dict):
            out.extend((name, kwargs or {}) for name, kwargs in entry.items())
    return out


def preprocessing_notes(env_id: str | None, config: dict | None, env_kwargs: dict) -> list[str]:
    """Each way the teacher's training environment differs from ours (reported, never silently ignored)."""
    notes = []
    if env_id and not env_id.endswith("NoFrameskip-v4"):
        notes.append(f"trained on {env_id}, ours is NoFrameskip-v4 (ALE v5 ids skip frames and repeat actions "
                     "with probability 0.25 unless env_kwargs say otherwise)")
    for key, value in (env_kwargs or {}).items():
        notes.append(f"environment argument {key}={value} (ours: the NoFrameskip-v4 defaults)")
    if config is None:
        notes.append("no config.yml: frame stacking and wrappers unknown")
        return notes
    stack = config.get("frame_stack")
    if stack != atari.FRAME_STACK:
        notes.append(f"frame_stack {stack} (ours: {atari.FRAME_STACK})")
    wrappers = _wrappers(config)
    atari_kwargs = [kwargs for name, kwargs in wrappers if name == ATARI_WRAPPER]
    if not atari_kwargs:
        notes.append(f"no {ATARI_WRAPPER} in env_wrapper ({', '.join(n for n, _ in wrappers) or 'none'}): frames "
                     "may be preprocessed differently")
    for key, value in (atari_kwargs[0] if atari_kwargs else {}).items():
        if key in WRAPPER_DEFAULTS and value != WRAPPER_DEFAULTS[key]:
            notes.append(f"AtariWrapper {key}={value} (ours: {WRAPPER_DEFAULTS[key]})")
    for name, _ in wrappers:
        if name != ATARI_WRAPPER:
            notes.append(f"extra wrapper {name}")
    if config.get("normalize"):
        notes.append("trained with VecNormalize observation statistics, which this loader does not apply")
    return notes
