"""``--device auto|cpu|cuda`` resolved in one place."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from distill.environment.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a user error."""
    if name not in DEVICE_CHOICES:
        raise UserError(f"unknown --device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(name)


def cpu_model() -> str:
    """The CPU's model name, stored beside a run's results: float results on the CPU can differ between CPU models
    (and thread counts), so a rerun that does not match bit for bit can be told apart from a bug."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def exact_float32() -> None:
    """Turn off TF32 (cuDNN uses it for float32 convolutions by default on Ampere and later GPUs).

    A recording is the ground truth every student is judged against: with TF32 the teacher's logits and
    gradients carry ~1e-3 relative errors, and sampled actions can flip, so a GPU recording would no longer
    reproduce the CPU one with the same seed. Full float32 costs little for a teacher this size.
    """
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
