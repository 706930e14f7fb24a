"""``--device auto|cpu|cuda`` resolved in one place."""

from __future__ import annotations

import torch

from distill.errors import UserError

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


def exact_float32() -> None:
    """Turn off TF32 (cuDNN uses it for float32 convolutions by default on Ampere and later GPUs).

    A recording is the ground truth every student is judged against: with TF32 the teacher's logits and
    gradients carry ~1e-3 relative errors, and sampled actions can flip, so a GPU recording would no longer
    reproduce the CPU one with the same seed. Full float32 costs little for a teacher this size.
    """
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
