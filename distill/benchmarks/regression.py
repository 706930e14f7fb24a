"""The paper's regression benchmark (section 4.1, figure 2 right): regular vs Sobolev training.

A two-hidden-layer MLP (256 units each; ReLU as in the paper, or a smooth activation) regresses a 2-D test function from ``n_train``
uniform samples, either on values alone (``regular``: L2 on values) or on values and exact
gradients (``sobolev``: L2 on values + L2 on gradients, paper section 4.1). Both methods share
everything else: inputs mapped to [-1, 1]^2, targets standardised with training statistics,
Adam with a cosine learning-rate decay, the same steps and batch size, the same initial weights
for a given seed. Test errors are reported in the function's own units.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from distill.benchmarks.functions import TestFunction
from distill.sobolev import sobolev_loss, squared_error

METHODS = ("regular", "sobolev")


@dataclass(frozen=True)
class RegressionConfig:
    """Training settings shared by both methods."""

    steps: int = 3000
    lr: float = 1e-3
    batch_size: int = 256
    hidden: int = 256
    n_test: int = 10_000
    activation: str = "relu"
    gradient_scale: str = "normalised"  # "normalised": divide the gradient term by mean ||grad||^2; "none"


ACTIVATIONS = {"relu": nn.ReLU, "softplus": lambda: nn.Softplus(beta=5.0), "tanh": nn.Tanh, "silu": nn.SiLU}


def make_mlp(hidden: int = 256, activation: str = "relu") -> nn.Module:
    """The paper's regressor: 2 -> hidden -> hidden -> 1, ReLU by default (as in the paper)."""
    act = ACTIVATIONS[activation]
    return nn.Sequential(nn.Linear(2, hidden), act(), nn.Linear(hidden, hidden), act(), nn.Linear(hidden, 1))


class _Normaliser:
    """Affine maps x -> [-1, 1]^2 and y -> zero mean, unit variance (gradients scale accordingly)."""

    def __init__(self, func: TestFunction, y_train: torch.Tensor):
        low = torch.tensor([d[0] for d in func.domain])
        high = torch.tensor([d[1] for d in func.domain])
        self.center, self.half = (low + high) / 2, (high - low) / 2
        self.y_mean = y_train.mean()
        self.y_std = y_train.std().clamp_min(1e-8) if y_train.numel() > 1 else torch.tensor(1.0)

    def x(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.center) / self.half

    def y(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.y_mean) / self.y_std

    def grad(self, g: torch.Tensor) -> torch.Tensor:
        return g * self.half / self.y_std

    def y_back(self, y_n: torch.Tensor) -> torch.Tensor:
        return y_n * self.y_std + self.y_mean

    def grad_back(self, g_n: torch.Tensor) -> torch.Tensor:
        return g_n * self.y_std / self.half


@dataclass
class FittedRegressor:
    """A trained regressor with what it needs to answer in the function's own units, and its training curve."""

    model: nn.Module
    norm: _Normaliser
    final_loss: float
    # (step, value term, weighted gradient term): the training loss's two parts every ``curve_every`` steps and at
    # the last one (for ``regular`` the gradient term is measured, not trained on)
    curve: list[tuple[int, float, float]]

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Values and input gradients at ``x`` (the function's coordinates), in the function's units."""
        x_eval = self.norm.x(x).requires_grad_(True)
        out = self.model(x_eval).squeeze(1)
        (g_eval,) = torch.autograd.grad(out.sum(), x_eval)
        return self.norm.y_back(out.detach()), self.norm.grad_back(g_eval)


def training_set(func: TestFunction, n_train: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``n_train`` training points, values and gradients of (function, seed): the same for both methods."""
    data_gen = torch.Generator().manual_seed(10_000 * seed + n_train)
    x_train = func.sample(n_train, data_gen)
    y_train, g_train = func.values_and_gradients(x_train)
    return x_train, y_train, g_train


def fit_regressor(func: TestFunction, n_train: int, method: str, seed: int,
                  cfg: RegressionConfig = RegressionConfig(), curve_every: int = 0) -> FittedRegressor:
    """Train one regressor on ``n_train`` points of ``func``; with ``curve_every`` > 0 keep its training curve
    (which adds one gradient evaluation per point kept for the ``regular`` method)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    x_train, y_train, g_train = training_set(func, n_train, seed)
    norm = _Normaliser(func, y_train)
    xn, yn, gn = norm.x(x_train), norm.y(y_train), norm.grad(g_train)

    grad_weight = 1.0
    if cfg.gradient_scale == "normalised":
        grad_weight = 1.0 / float(gn.pow(2).sum(1).mean().clamp_min(1e-12))
    elif cfg.gradient_scale != "none":
        raise ValueError(f"gradient_scale must be 'normalised' or 'none', got {cfg.gradient_scale!r}")
    torch.manual_seed(seed)
    model = make_mlp(cfg.hidden, cfg.activation)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    batch_gen = torch.Generator().manual_seed(seed + 7)
    full_batch = n_train <= cfg.batch_size
    curve: list[tuple[int, float, float]] = []
    for step in range(cfg.steps):
        if full_batch:
            xb, yb, gb = xn, yn, gn
        else:
            idx = torch.randint(n_train, (cfg.batch_size,), generator=batch_gen)
            xb, yb, gb = xn[idx], yn[idx], gn[idx]
        if method == "sobolev":
            parts = sobolev_loss(model, xb, yb, gb, weights=(1.0, grad_weight))
            loss = parts.total
        else:
            loss = squared_error(model(xb), yb.unsqueeze(1))
        if curve_every and (step % curve_every == 0 or step == cfg.steps - 1):
            if method == "sobolev":
                value_term, grad_term = float(parts.value.detach()), float(parts.derivatives[0].detach()) * grad_weight
            else:  # the gradient term the Sobolev loss would have here, measured but not trained on
                check = sobolev_loss(model, xb, yb, gb, weights=(1.0, grad_weight))
                value_term, grad_term = float(loss.detach()), float(check.derivatives[0].detach()) * grad_weight
            curve.append((step, value_term, grad_term))
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=opt.param_groups[0]["params"])  # not d(loss)/dx, which nothing uses
        opt.step()
        sched.step()
    return FittedRegressor(model, norm, float(loss.detach()), curve)


def run_regression(func: TestFunction, n_train: int, method: str, seed: int,
                   cfg: RegressionConfig = RegressionConfig()) -> dict:
    """Train one regressor and return its test errors: ``test_mse`` and ``test_grad_mse``.

    ``test_grad_mse`` is the mean over test points and both input dimensions of the squared
    gradient error. The training and test sets depend only on (function, n_train, seed), so the
    two methods see identical data.
    """
    fitted = fit_regressor(func, n_train, method, seed, cfg)
    test_gen = torch.Generator().manual_seed(999_983 + seed)
    x_test = func.sample(cfg.n_test, test_gen)
    y_test, g_test = func.values_and_gradients(x_test)
    pred_y, pred_g = fitted.predict(x_test)
    return {
        "test_mse": float((pred_y - y_test).pow(2).mean()),
        "test_grad_mse": float((pred_g - g_test).pow(2).mean()),
        "train_final_loss": fitted.final_loss,
    }


def run_job(job: tuple) -> dict:
    """``(function name, n_train, method, seed, config)`` -> one results row; for worker processes.

    Tiny nets want one torch thread each: more threads only add contention.
    """
    from distill.benchmarks.functions import FUNCTIONS

    name, n_train, method, seed, cfg = job
    torch.set_num_threads(1)
    start = time.time()
    res = run_regression(FUNCTIONS[name], n_train, method, seed, cfg)
    return {"function": name, "n_train": n_train, "method": method, "seed": seed, **res,
            "seconds": round(time.time() - start, 2)}
