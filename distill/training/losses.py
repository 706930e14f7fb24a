"""Distillation losses: KL between policies plus alpha times the stochastic Sobolev term (paper section 4.2).

    loss = KL(pi* || pi)  +  alpha * d( grad_s <log pi(s), v>,  grad_s <log pi*(s), v> )

``pi*`` is the teacher, ``pi`` the student, v the recorded unit directions, and the Sobolev
core (:mod:`distill.sobolev`) computes the student's projected input gradient with
``create_graph=True`` so that the term trains the student. ``alpha = 0`` is plain policy
distillation: no input gradient is computed at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from distill.sobolev import derivative_distance, input_gradients

KL_DIRECTIONS = ("teacher-student", "student-teacher")
SOBOLEV_DISTANCES = ("relative", "cosine", "squared_l2", "mean_squared", "l2")


def kl_teacher_student(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over states of KL(pi* || pi) = sum_a pi*(a) (log pi*(a) - log pi(a)), in nats."""
    # F.kl_div(input, target) computes target * (log target - input): input must be the student's
    # log-probabilities; log_target=True lets the teacher be given as log-probabilities too.
    return F.kl_div(F.log_softmax(student_logits, 1), F.log_softmax(teacher_logits, 1), log_target=True,
                    reduction="batchmean")


def kl_student_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over states of KL(pi || pi*) (the direction the paper writes), in nats."""
    return F.kl_div(F.log_softmax(teacher_logits, 1), F.log_softmax(student_logits, 1), log_target=True,
                    reduction="batchmean")


def kl_per_state(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 direction: str = "teacher-student") -> torch.Tensor:
    """KL between the two policies for each state ``[B]``, in nats: what held-out metrics sum over states."""
    log_student, log_teacher = F.log_softmax(student_logits.float(), 1), F.log_softmax(teacher_logits.float(), 1)
    if direction == "teacher-student":
        return F.kl_div(log_student, log_teacher, log_target=True, reduction="none").sum(1)
    if direction == "student-teacher":
        return F.kl_div(log_teacher, log_student, log_target=True, reduction="none").sum(1)
    raise ValueError(f"unknown KL direction {direction!r}; choose one of {KL_DIRECTIONS}")


def policy_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
              direction: str = "teacher-student") -> torch.Tensor:
    """Mean over states of the KL in ``direction`` (the training loss's value term)."""
    if direction == "teacher-student":
        return kl_teacher_student(student_logits, teacher_logits)
    if direction == "student-teacher":
        return kl_student_teacher(student_logits, teacher_logits)
    raise ValueError(f"unknown KL direction {direction!r}; choose one of {KL_DIRECTIONS}")


class _Cosine(torch.autograd.Function):
    """cos(g, t) over the last dim, differentiable in g, with its gradient written out.

    Autograd's own graph of the three dot products keeps and multiplies the maps (each [B, K, 28224]) six times;
    this takes one multiply and one fused multiply-add in the backward pass, a few ms of a Sobolev step on CPU
    (scripts/bench_train.py --sobolev-variants times the sums it replaced): d cos / dg = t / (|g||t|) - cos g / |g|^2.
    The norms are clamped at 1e-12, so a vanishing student gradient gives cos 0 and a finite gradient.
    """

    @staticmethod
    def forward(ctx, g: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        dot = torch.linalg.vecdot
        norm_g, norm_t = dot(g, g).clamp_min(1e-24).sqrt(), dot(t, t).clamp_min(1e-24).sqrt()
        cos = dot(g, t) / (norm_g * norm_t)
        ctx.save_for_backward(g, t, norm_g, norm_t, cos)
        return cos

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_cos: torch.Tensor) -> tuple[torch.Tensor, None]:
        g, t, norm_g, norm_t, cos = ctx.saved_tensors
        on_t = (grad_cos / (norm_g * norm_t)).unsqueeze(-1)
        on_g = (-grad_cos * cos / (norm_g * norm_g)).unsqueeze(-1)
        return torch.addcmul(g * on_g, t, on_t), None


def sobolev_distance(student_grads: torch.Tensor, teacher_grads: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Distance between projected input gradients ``[B, K, 4, 84, 84]``, averaged over states and projections.

    ``relative``: ||g - g*||^2 / ||g*||^2 per (state, projection) (scale-free: a student with zero
    input gradient scores 1, whatever the teacher's gradient scale); ``cosine``: 1 - cos(g, g*)
    (direction only, 0 to 2: the magnitude of the student's gradient is left to the KL term); the others as in
    :func:`distill.sobolev.derivative_distance`.
    """
    teacher_grads = teacher_grads.to(student_grads.dtype)
    if kind == "cosine":  # direction only: matching the teacher never asks the student to flatten its gradient
        return (1.0 - _Cosine.apply(student_grads.flatten(2), teacher_grads.flatten(2))).mean()
    if kind == "relative":
        diff = (student_grads - teacher_grads).flatten(2).pow(2).sum(-1)
        scale = teacher_grads.flatten(2).pow(2).sum(-1).clamp_min(1e-12)
        return (diff / scale).mean()
    return derivative_distance(student_grads, teacher_grads, kind, sample_dims=2)


@dataclass
class DistillLoss:
    total: torch.Tensor
    kl: torch.Tensor
    sobolev: torch.Tensor | None
    student_logits: torch.Tensor


def distillation_loss(student: torch.nn.Module, obs_scaled: torch.Tensor, teacher_logits: torch.Tensor,
                      alpha: float = 0.0, directions: torch.Tensor | None = None,
                      teacher_grads: torch.Tensor | None = None, kl_direction: str = "teacher-student",
                      distance: str = "cosine") -> DistillLoss:
    """KL + alpha * Sobolev on one batch. With ``alpha == 0`` the input gradient is never built.

    Train with ``total.backward(inputs=list(student.parameters()))``: a bare ``backward()`` also computes the
    gradient in the observations (see :mod:`distill.sobolev`)."""
    if alpha == 0:
        logits = student(obs_scaled)
        kl = policy_kl(logits, teacher_logits, kl_direction)
        return DistillLoss(kl, kl, None, logits)
    if directions is None or teacher_grads is None:
        raise ValueError("alpha > 0 needs the recorded directions and teacher gradients")
    x = obs_scaled.detach().requires_grad_(True)
    logits = student(x)
    kl = policy_kl(logits, teacher_logits, kl_direction)
    grads = input_gradients(F.log_softmax(logits, 1), x, directions, create_graph=True)
    sob = sobolev_distance(grads, teacher_grads, distance)
    return DistillLoss(kl + alpha * sob, kl, sob, logits)


@dataclass
class MultiGameLoss:
    total: torch.Tensor
    kl: torch.Tensor
    sobolev: torch.Tensor | None
    kl_by_game: list[torch.Tensor]
    sobolev_by_game: list[torch.Tensor] | None


def multigame_distillation_loss(student: torch.nn.Module, obs_scaled: torch.Tensor, sizes: list[int],
                                teacher_logits: list[torch.Tensor], alpha: float = 0.0,
                                directions: list[torch.Tensor] | None = None,
                                teacher_grads: list[torch.Tensor] | None = None,
                                kl_direction: str = "teacher-student", distance: str = "cosine") -> MultiGameLoss:
    """KL + alpha * Sobolev on a batch holding several games in turn (``sizes`` states each, the order of
    ``student(obs, sizes)``'s outputs); each game's terms are taken against its own teacher and projections, and
    weighted by the game's share of the batch, so the total is the mean per-state loss of the whole batch.

    The input gradients of all games come from one backward pass: each state's output depends on its own input
    only, so the sum of every game's <log pi_g(s), v> (with log-probabilities and directions zero-padded to the
    largest action count) has each state's own projected gradient as its gradient there."""
    share = [size / sum(sizes) for size in sizes]
    if alpha == 0:
        logits = student(obs_scaled, sizes)
        kls = [policy_kl(s, t, kl_direction) for s, t in zip(logits, teacher_logits, strict=True)]
        kl = sum(w * k for w, k in zip(share, kls))
        return MultiGameLoss(kl, kl, None, kls, None)
    if directions is None or teacher_grads is None:
        raise ValueError("alpha > 0 needs each game's directions and teacher gradients")
    x = obs_scaled.detach().requires_grad_(True)
    logits = student(x, sizes)
    kls = [policy_kl(s, t, kl_direction) for s, t in zip(logits, teacher_logits, strict=True)]
    widest = max(part.shape[1] for part in logits)
    log_probs = torch.cat([F.pad(F.log_softmax(part, 1), (0, widest - part.shape[1])) for part in logits])
    dirs = torch.cat([F.pad(d.to(log_probs.dtype), (0, widest - d.shape[-1])) for d in directions])
    grads = input_gradients(log_probs, x, dirs, create_graph=True).split(list(sizes))
    sobs = [sobolev_distance(g, t, distance) for g, t in zip(grads, teacher_grads, strict=True)]
    kl = sum(w * k for w, k in zip(share, kls))
    sob = sum(w * s for w, s in zip(share, sobs))
    return MultiGameLoss(kl + alpha * sob, kl, sob, kls, sobs)
