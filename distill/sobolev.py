"""The Sobolev Training core (Czarnecki et al., 2017), independent of Atari.

Sobolev Training fits a model ``m`` to a target ``f`` on values *and* input derivatives:

    L = l0(m(x), f(x)) + w1 * l1(D_x m(x), D_x f(x)) + w2 * l2(D_x^2 m(x), D_x^2 f(x))      (paper eq. 1)

For a model with many outputs the Jacobian ``D_x m`` is large, so the stochastic version
(paper eq. 2) matches its projections on random unit vectors ``v`` instead:

    L = l0(m(x), f(x)) + w1 * E_v l1(grad_x <m(x), v>, grad_x <f(x), v>)

Everything here works on any differentiable ``torch.nn.Module`` (or callable) whose outputs
for different batch elements do not interact (no batch norm in training mode), so that one
backward pass of a summed output gives every per-sample input gradient at once. Shapes:
inputs ``[B, *S]``, outputs ``[B, D]``, projection directions ``[B, K, D]``, projected input
gradients ``[B, K, *S]``, Jacobians ``[B, D, *S]``.

The losses make ``x`` a leaf that requires grad, so a bare ``loss.backward()`` also computes the loss's gradient in
``x``, which nothing uses; ``loss.backward(inputs=list(model.parameters()))`` skips it and gives the same parameter
gradients (for a conv net's first layer it is the costliest op of the step: about a quarter of a Sobolev
distillation step on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

Tensor = torch.Tensor
LossFn = Callable[[Tensor, Tensor], Tensor]

DISTANCES = ("squared_l2", "mean_squared", "l2")


# ---------------------------------------------------------------------------------------------
# distances
# ---------------------------------------------------------------------------------------------
def derivative_distance(pred: Tensor, target: Tensor, kind: str = "squared_l2", sample_dims: int = 1) -> Tensor:
    """Distance between derivative tensors, averaged over the leading ``sample_dims`` dims.

    ``squared_l2``: mean over samples of ||pred - target||^2 (sum over the remaining dims);
    ``mean_squared``: mean of (pred - target)^2 over every element (``squared_l2`` / size);
    ``l2``: mean over samples of ||pred - target|| (the paper's eq. in section 4.2).
    """
    diff = (pred - target.to(pred.dtype)).flatten(sample_dims)
    if kind == "squared_l2":
        return diff.pow(2).sum(-1).mean()
    if kind == "mean_squared":
        return diff.pow(2).mean()
    if kind == "l2":
        # sqrt has an infinite derivative at 0: add a tiny epsilon so a perfect fit still trains
        return (diff.pow(2).sum(-1) + 1e-12).sqrt().mean()
    raise ValueError(f"unknown distance {kind!r}; choose one of {', '.join(DISTANCES)}")


def squared_error(pred: Tensor, target: Tensor) -> Tensor:
    """L2 value loss: mean over samples of ||pred - target||^2 (sum over output dims)."""
    return derivative_distance(pred, target, "squared_l2")


# ---------------------------------------------------------------------------------------------
# derivatives
# ---------------------------------------------------------------------------------------------
def random_unit_vectors(batch: int, k: int, dim: int, *, generator: torch.Generator | None = None,
                        device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """``[batch, k, dim]`` vectors uniform on the unit sphere of R^dim (normalised Gaussians)."""
    v = torch.randn(batch, k, dim, generator=generator, device=device, dtype=dtype)
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def input_gradients(outputs: Tensor, inputs: Tensor, directions: Tensor | None = None,
                    create_graph: bool = True) -> Tensor:
    """grad_x <outputs(x), v> per sample: ``[B, K, *S]`` for directions ``[B, K, D]``.

    ``directions`` may also be ``[B, D]`` (gives ``[B, *S]``) or ``None`` for scalar outputs
    (``[B]`` or ``[B, 1]``, gives ``[B, *S]``). ``inputs`` must require grad and ``outputs`` must
    have been computed from it. ``create_graph=True`` keeps the result differentiable in the
    model's parameters, which training needs.
    """
    if not inputs.requires_grad:
        raise ValueError("inputs must require grad (call inputs.requires_grad_() before the forward pass)")
    if directions is None:
        if outputs.dim() == 2 and outputs.shape[1] != 1:
            raise ValueError("outputs have several dimensions: pass directions, or use jacobian()")
        (grad,) = torch.autograd.grad(outputs.sum(), inputs, create_graph=create_graph)
        return grad
    single = directions.dim() == 2
    dirs = directions.unsqueeze(1) if single else directions
    dirs = dirs.to(outputs.dtype)
    grads = []
    k = dirs.shape[1]
    for j in range(k):
        (grad,) = torch.autograd.grad((outputs * dirs[:, j]).sum(), inputs, create_graph=create_graph,
                                      retain_graph=create_graph or j < k - 1)
        grads.append(grad)
    stacked = torch.stack(grads, dim=1)
    return stacked[:, 0] if single else stacked


def jacobian(outputs: Tensor, inputs: Tensor, create_graph: bool = True) -> Tensor:
    """Full input Jacobian ``[B, D, *S]``: one backward pass per output dimension (keep D small)."""
    if outputs.dim() == 1:
        outputs = outputs.unsqueeze(1)
    eye = torch.eye(outputs.shape[1], device=outputs.device, dtype=outputs.dtype)
    directions = eye.unsqueeze(0).expand(outputs.shape[0], -1, -1)
    return input_gradients(outputs, inputs, directions, create_graph=create_graph)


def hessian_vector_products(gradients: Tensor, inputs: Tensor, vectors: Tensor, create_graph: bool = True) -> Tensor:
    """H u = grad_x <grad_x g(x), u> per sample, for first-order ``gradients`` [B, *S] built with a graph.

    ``vectors`` has the input's shape ``[B, *S]``; the result too. This is the paper's second-order
    projection (figure 1b) at the cost of one more backward pass.
    """
    (hvp,) = torch.autograd.grad((gradients * vectors).sum(), inputs, create_graph=create_graph)
    return hvp


# ---------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------
@dataclass
class SobolevLoss:
    """The total loss and its parts, so training loops can log each order."""

    total: Tensor
    value: Tensor
    derivatives: list[Tensor] = field(default_factory=list)


def _as_2d(outputs: Tensor) -> Tensor:
    return outputs.unsqueeze(1) if outputs.dim() == 1 else outputs


def sobolev_loss(model: Callable[[Tensor], Tensor], x: Tensor, target_values: Tensor, target_jacobian: Tensor, *,
                 value_loss: LossFn = squared_error, derivative_loss: LossFn = squared_error,
                 weights: tuple[float, float] = (1.0, 1.0)) -> SobolevLoss:
    """Full first-order Sobolev loss: w0 * l0(m(x), y) + w1 * l1(J_m(x), J_y), J of shape [B, D, *S].

    For scalar models ``target_jacobian`` may be the plain gradient ``[B, *S]``.
    """
    x = x.detach().requires_grad_(True)
    outputs = _as_2d(model(x))
    jac = jacobian(outputs, x, create_graph=True)
    if target_jacobian.dim() == x.dim():
        target_jacobian = target_jacobian.unsqueeze(1)
    value = value_loss(outputs, _as_2d(target_values))
    first = derivative_loss(jac, target_jacobian)
    return SobolevLoss(weights[0] * value + weights[1] * first, value, [first])


def stochastic_sobolev_loss(model: Callable[[Tensor], Tensor], x: Tensor, target_values: Tensor, directions: Tensor,
                            target_projections: Tensor, *, value_loss: LossFn = squared_error,
                            derivative_loss: LossFn = squared_error,
                            weights: tuple[float, float] = (1.0, 1.0)) -> SobolevLoss:
    """Paper eq. (2): w0 * l0(m(x), y) + w1 * l1(grad_x <m(x), v>, g*) with g* = grad_x <f(x), v> given.

    ``directions`` ``[B, K, D]`` are the v's the targets were projected on (e.g. stored in a dataset);
    ``target_projections`` ``[B, K, *S]``. With squared-L2 ``derivative_loss`` the expectation over v
    uniform on the unit sphere equals the full Jacobian term divided by D (E[v v^T] = I / D).
    """
    x = x.detach().requires_grad_(True)
    outputs = _as_2d(model(x))
    projections = input_gradients(outputs, x, directions, create_graph=True)
    value = value_loss(outputs, _as_2d(target_values))
    first = derivative_loss(projections, target_projections)
    return SobolevLoss(weights[0] * value + weights[1] * first, value, [first])


def sobolev_loss_from_function(model: Callable[[Tensor], Tensor], target: Callable[[Tensor], Tensor], x: Tensor, *,
                               order: int = 1, projections: int | None = None,
                               value_loss: LossFn = squared_error, derivative_loss: LossFn = squared_error,
                               weights: tuple[float, ...] = (1.0, 1.0, 1.0),
                               generator: torch.Generator | None = None) -> SobolevLoss:
    """Sobolev loss against a differentiable target function, derivatives computed on the fly.

    ``projections=None`` matches the full Jacobian; ``projections=K`` matches K random projections
    (fresh v each call, the paper's Monte Carlo estimator). ``order=2`` adds Hessian-vector
    projections ``H u`` for one random unit ``u`` in input space per sample (of ``<m(x), v>`` for the
    first v when the output has several dimensions).
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order}")
    x_model = x.detach().requires_grad_(True)
    x_target = x.detach().requires_grad_(True)
    out_m = _as_2d(model(x_model))
    out_f = _as_2d(target(x_target))
    batch, dim = out_m.shape
    if projections is None:
        dirs = torch.eye(dim, device=x.device, dtype=out_m.dtype).unsqueeze(0).expand(batch, -1, -1)
    else:
        dirs = random_unit_vectors(batch, projections, dim, generator=generator, device=x.device, dtype=out_m.dtype)
    g_m = input_gradients(out_m, x_model, dirs, create_graph=True)
    g_f = input_gradients(out_f, x_target, dirs, create_graph=order == 2)  # graph kept only for H u
    value = value_loss(out_m, out_f.detach())
    terms = [derivative_loss(g_m, g_f.detach())]
    if order == 2:
        u = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        u = u / u.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
        h_m = hessian_vector_products(g_m[:, 0], x_model, u, create_graph=True)
        h_f = hessian_vector_products(g_f[:, 0], x_target, u, create_graph=False)
        terms.append(derivative_loss(h_m, h_f.detach()))
    total = weights[0] * value
    for w, term in zip(weights[1:], terms):
        total = total + w * term
    return SobolevLoss(total, value, terms)
