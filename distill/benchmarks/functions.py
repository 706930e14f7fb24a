"""The seven 2-D optimisation test functions of the paper's regression benchmark (section 4.1).

Each is a differentiable torch function of ``x[..., 2]`` with its usual domain, so targets and
their exact gradients come from autograd. Domains follow the common benchmark references
(Surjanovic & Bingham's Virtual Library of Simulation Experiments), Ackley's narrowed to the
[-5, 5]^2 square used in most 2-D plots of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

Tensor = torch.Tensor


def ackley(x: Tensor) -> Tensor:
    a, b, c = 20.0, 0.2, 2 * math.pi
    x1, x2 = x[..., 0], x[..., 1]
    r = torch.sqrt(0.5 * (x1**2 + x2**2) + 1e-12)  # epsilon: finite gradient at the origin
    return -a * torch.exp(-b * r) - torch.exp(0.5 * (torch.cos(c * x1) + torch.cos(c * x2))) + a + math.e


def beale(x: Tensor) -> Tensor:
    x1, x2 = x[..., 0], x[..., 1]
    return (1.5 - x1 + x1 * x2) ** 2 + (2.25 - x1 + x1 * x2**2) ** 2 + (2.625 - x1 + x1 * x2**3) ** 2


def booth(x: Tensor) -> Tensor:
    x1, x2 = x[..., 0], x[..., 1]
    return (x1 + 2 * x2 - 7) ** 2 + (2 * x1 + x2 - 5) ** 2


def bukin6(x: Tensor) -> Tensor:
    x1, x2 = x[..., 0], x[..., 1]
    return 100 * torch.sqrt(torch.abs(x2 - 0.01 * x1**2) + 1e-12) + 0.01 * torch.abs(x1 + 10)


def mccormick(x: Tensor) -> Tensor:
    x1, x2 = x[..., 0], x[..., 1]
    return torch.sin(x1 + x2) + (x1 - x2) ** 2 - 1.5 * x1 + 2.5 * x2 + 1


def rosenbrock(x: Tensor) -> Tensor:
    x1, x2 = x[..., 0], x[..., 1]
    return 100 * (x2 - x1**2) ** 2 + (1 - x1) ** 2


def styblinski_tang(x: Tensor) -> Tensor:
    return 0.5 * (x**4 - 16 * x**2 + 5 * x).sum(-1)


@dataclass(frozen=True)
class TestFunction:
    """A benchmark function with its domain ``[(low1, high1), (low2, high2)]``."""

    name: str
    fn: Callable[[Tensor], Tensor]
    domain: tuple[tuple[float, float], tuple[float, float]]

    def sample(self, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Tensor:
        """``n`` points uniform on the domain."""
        low = torch.tensor([d[0] for d in self.domain], dtype=dtype)
        high = torch.tensor([d[1] for d in self.domain], dtype=dtype)
        return low + (high - low) * torch.rand(n, 2, generator=generator, dtype=dtype)

    def values_and_gradients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Exact f(x) ``[n]`` and grad f(x) ``[n, 2]`` by autograd (computed in float64)."""
        x64 = x.detach().double().requires_grad_(True)
        y = self.fn(x64)
        (grad,) = torch.autograd.grad(y.sum(), x64)
        return y.detach().to(x.dtype), grad.to(x.dtype)


FUNCTIONS: dict[str, TestFunction] = {
    f.name: f
    for f in (
        TestFunction("ackley", ackley, ((-5.0, 5.0), (-5.0, 5.0))),
        TestFunction("beale", beale, ((-4.5, 4.5), (-4.5, 4.5))),
        TestFunction("booth", booth, ((-10.0, 10.0), (-10.0, 10.0))),
        TestFunction("bukin6", bukin6, ((-15.0, -5.0), (-3.0, 3.0))),
        TestFunction("mccormick", mccormick, ((-1.5, 4.0), (-3.0, 4.0))),
        TestFunction("rosenbrock", rosenbrock, ((-2.0, 2.0), (-1.0, 3.0))),
        TestFunction("styblinski_tang", styblinski_tang, ((-5.0, 5.0), (-5.0, 5.0))),
    )
}
