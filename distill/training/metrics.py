"""How well a student matches its teacher on recorded states: the one implementation of the held-out metrics.

Action error is the share of states where the student's most likely action differs from the teacher's; the KL is
in nats, both directions (``test_kl`` is KL(pi* || pi), the training loss's direction). Training's periodic
evaluations, its final evaluation and the evaluation stage's per-episode sums all use :func:`per_state_metrics`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from distill.training.data import heldout_blocks
from distill.training.losses import kl_per_state

Blocks = Iterable[tuple[torch.Tensor, torch.Tensor]]  # (uint8 frames [B,4,84,84], teacher logits [B,A])


@torch.no_grad()
def per_state_metrics(student: torch.nn.Module, blocks: Blocks) -> dict[str, np.ndarray]:
    """For every state of ``blocks``: ``error`` (1.0 where the argmax actions differ), ``kl`` (KL(pi* || pi)) and
    ``kl_student_teacher`` (KL(pi || pi*)), as float64 arrays. The student is evaluated in eval mode."""
    was_training = student.training
    student.eval()
    parts: dict[str, list[np.ndarray]] = {"error": [], "kl": [], "kl_student_teacher": []}
    for obs, teacher in blocks:
        logits = student(obs.float().div_(255))
        parts["error"].append((logits.argmax(1) != teacher.argmax(1)).cpu().numpy())
        parts["kl"].append(kl_per_state(logits, teacher, "teacher-student").cpu().numpy())
        parts["kl_student_teacher"].append(kl_per_state(logits, teacher, "student-teacher").cpu().numpy())
    student.train(was_training)
    return {k: np.concatenate(v).astype(np.float64) if v else np.zeros(0) for k, v in parts.items()}


def summarize(per_state: dict[str, np.ndarray]) -> dict:
    """Means over states, under the names a run's metrics files use."""
    n = len(per_state["error"])
    if n == 0:
        raise ValueError("no states to evaluate")
    return {"test_action_error": float(per_state["error"].mean()), "test_kl": float(per_state["kl"].mean()),
            "test_kl_student_teacher": float(per_state["kl_student_teacher"].mean()), "test_states": n}


def in_memory_blocks(obs_uint8: torch.Tensor, teacher_logits: torch.Tensor, block: int = 1024) -> Iterator:
    """Blocks of states already in memory (the capped set that periodic evaluations reuse)."""
    for i in range(0, len(obs_uint8), block):
        yield obs_uint8[i:i + block], teacher_logits[i:i + block]


def evaluate_states(student: torch.nn.Module, dataset: Path, rows: np.ndarray, device: torch.device,
                    block: int = 1024) -> dict:
    """Held-out metrics of ``rows`` (sorted) of a recording, read from the file in blocks."""
    return summarize(per_state_metrics(student, heldout_blocks(dataset, rows, device, block)))


def evaluate_loaded(student: torch.nn.Module, obs_uint8: torch.Tensor, teacher_logits: torch.Tensor) -> dict:
    """The same metrics on states already in memory."""
    return summarize(per_state_metrics(student, in_memory_blocks(obs_uint8, teacher_logits)))
