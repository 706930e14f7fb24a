"""sobolev-distill: distil Atari policies into small students with Sobolev Training.

    from distill import load_teacher, record, train, evaluate

The package mirrors the pipeline, one subpackage per stage in the order data flows (docs/architecture.md):
:mod:`distill.sobolev` (the Sobolev core: torch only, usable with any ``torch.nn.Module``),
:mod:`distill.environment`, :mod:`distill.recording`, :mod:`distill.training`, :mod:`distill.evaluation` and
:mod:`distill.cli`. The API functions are imported on first use, so that ``import distill.sobolev`` loads no
Atari, HDF5 or stable-baselines3 code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distill._version import __version__

__all__ = ["__version__", "load_teacher", "record", "train", "evaluate", "RecordConfig", "TrainConfig", "Teacher"]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily below
    from distill.api import RecordConfig, Teacher, TrainConfig, evaluate, load_teacher, record, train


def __getattr__(name: str):
    if name in __all__:
        from distill import api

        return getattr(api, name)
    raise AttributeError(f"module 'distill' has no attribute {name!r}")
