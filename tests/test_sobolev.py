"""The Sobolev core: derivatives against finite differences, losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from distill.sobolev import (
    derivative_distance,
    hessian_vector_products,
    input_gradients,
    jacobian,
    random_unit_vectors,
    sobolev_loss,
    sobolev_loss_from_function,
    stochastic_sobolev_loss,
)


def small_net(d_in: int = 3, d_out: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, 16), nn.Tanh(), nn.Linear(16, d_out)).double()


def finite_difference_jacobian(fn, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """[B, D, S] by central differences, one input coordinate at a time."""
    cols = []
    for i in range(x.shape[1]):
        step = torch.zeros_like(x)
        step[:, i] = eps
        cols.append((fn(x + step) - fn(x - step)) / (2 * eps))
    return torch.stack(cols, dim=-1)


def test_jacobian_matches_finite_differences():
    net = small_net()
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    jac = jacobian(net(x), x, create_graph=False)
    expected = finite_difference_jacobian(lambda z: net(z).detach(), x.detach())
    assert jac.shape == (5, 4, 3)
    torch.testing.assert_close(jac, expected, atol=1e-7, rtol=1e-6)


def test_projected_gradients_are_jacobian_times_direction():
    net = small_net()
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    v = random_unit_vectors(6, 2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    proj = input_gradients(net(x), x, v, create_graph=False)
    jac = finite_difference_jacobian(lambda z: net(z).detach(), x.detach())
    expected = torch.einsum("bkd,bds->bks", v, jac)
    assert proj.shape == (6, 2, 3)
    torch.testing.assert_close(proj, expected, atol=1e-7, rtol=1e-6)
    single = input_gradients(net(x), x, v[:, 0], create_graph=False)
    torch.testing.assert_close(single, expected[:, 0], atol=1e-7, rtol=1e-6)


def test_input_gradients_need_inputs_that_require_grad():
    net = small_net()
    x = torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="require grad"):
        input_gradients(net(x), x, torch.ones(2, 4, dtype=torch.float64))


def test_random_unit_vectors_are_unit_and_isotropic():
    v = random_unit_vectors(20000, 1, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)[:, 0]
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(20000, dtype=torch.float64))
    second_moment = v.T @ v / v.shape[0]  # E[v v^T] = I / D on the unit sphere
    torch.testing.assert_close(second_moment, torch.eye(3, dtype=torch.float64) / 3, atol=0.01, rtol=0)


def test_hessian_vector_products_match_full_hessian():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    u = torch.randn(4, 3, dtype=torch.float64)
    grads = input_gradients(net(x), x, create_graph=True)
    hvp = hessian_vector_products(grads, x, u, create_graph=False)
    for i in range(4):
        hess = torch.autograd.functional.hessian(lambda z: net(z.unsqueeze(0)).squeeze(), x[i].detach())
        torch.testing.assert_close(hvp[i], hess @ u[i])


def test_derivative_distances_hand_computed():
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    # per-sample squared norms: 1 + 4 = 5 and 9 + 16 = 25
    assert derivative_distance(pred, target, "squared_l2").item() == pytest.approx(15.0)
    assert derivative_distance(pred, target, "mean_squared").item() == pytest.approx(30.0 / 4)
    assert derivative_distance(pred, target, "l2").item() == pytest.approx((math.sqrt(5) + 5) / 2)
    with pytest.raises(ValueError):
        derivative_distance(pred, target, "l1")


def test_loss_is_zero_when_model_equals_target():
    net = small_net()
    x = torch.randn(8, 3, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    out = net(xr)
    jac = jacobian(out, xr, create_graph=False)
    full = sobolev_loss(net, x, out.detach(), jac)
    assert full.total.item() == pytest.approx(0.0, abs=1e-20)
    v = random_unit_vectors(8, 3, 4, dtype=torch.float64)
    proj = torch.einsum("bkd,bds->bks", v, jac)
    stoch = stochastic_sobolev_loss(net, x, out.detach(), v, proj)
    assert stoch.total.item() == pytest.approx(0.0, abs=1e-20)
    second = sobolev_loss_from_function(net, net, x, order=2, projections=2)
    assert second.total.item() == pytest.approx(0.0, abs=1e-20)
    assert len(second.derivatives) == 2


def test_loss_is_positive_and_trainable_when_model_differs():
    student, teacher = small_net(seed=0), small_net(seed=1)
    x = torch.randn(8, 3, dtype=torch.float64)
    loss = sobolev_loss_from_function(student, teacher, x, order=1)
    assert loss.derivatives[0].item() > 0
    loss.derivatives[0].backward()
    first_layer = student[0].weight.grad
    assert first_layer is not None and first_layer.abs().sum() > 0


def test_derivative_term_gradient_matches_finite_differences_in_parameters():
    """create_graph=True must make the derivative term differentiable in the weights, correctly."""
    net = small_net(d_in=2, d_out=2)
    x = torch.randn(3, 2, dtype=torch.float64)
    v = random_unit_vectors(3, 1, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    target = torch.randn(3, 1, 2, dtype=torch.float64)
    weight = net[0].weight

    def term(w: torch.Tensor) -> torch.Tensor:
        def model(z):
            h = torch.tanh(z @ w.T + net[0].bias)
            return net[2](h)

        return stochastic_sobolev_loss(model, x, torch.zeros(3, 2, dtype=torch.float64), v, target,
                                       weights=(0.0, 1.0)).total

    assert torch.autograd.gradcheck(term, (weight.detach().clone().requires_grad_(True),))


def test_stochastic_term_is_unbiased_up_to_output_dimension():
    """E_v ||<J_m - J_f, v>||^2 = ||J_m - J_f||_F^2 / D for v uniform on the unit sphere of R^D."""
    student, teacher = small_net(seed=0), small_net(seed=1)
    x = torch.randn(4, 3, dtype=torch.float64)
    full = sobolev_loss_from_function(student, teacher, x, projections=None).derivatives[0].item()
    gen = torch.Generator().manual_seed(0)
    samples = [sobolev_loss_from_function(student, teacher, x, projections=500, generator=gen).derivatives[0].item()
               for _ in range(8)]
    # derivative_distance sums over projections and inputs; divide by K to get the per-v expectation
    estimate = sum(samples) / len(samples) / 500
    assert estimate == pytest.approx(full / 4, rel=0.05)


def test_relu_models_and_float32_work():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 1))
    x = torch.randn(10, 2)
    y = torch.randn(10)
    g = torch.randn(10, 2)
    loss = sobolev_loss(net, x, y, g)
    loss.total.backward()
    assert torch.isfinite(loss.total)
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_core_runs_unchanged_on_cuda():
    net = small_net().cuda()
    teacher = small_net(seed=1).cuda()
    x = torch.randn(8, 3, dtype=torch.float64, device="cuda")
    cuda_loss = sobolev_loss_from_function(net, teacher, x, order=2, projections=2,
                                           generator=torch.Generator(device="cuda").manual_seed(0))
    cuda_loss.total.backward()
    cpu_full = sobolev_loss_from_function(net.cpu(), teacher.cpu(), x.cpu()).total.item()
    gpu_full = sobolev_loss_from_function(net.cuda(), teacher.cuda(), x).total.item()
    assert gpu_full == pytest.approx(cpu_full, rel=1e-6)
