"""Distillation losses against hand-computed values; alpha 0 is plain KL."""

from __future__ import annotations

import math

import pytest
import torch

from distill.training.losses import distillation_loss, kl_student_teacher, kl_teacher_student, sobolev_distance
from distill.sobolev import input_gradients, random_unit_vectors
from distill.environment.errors import UserError
from distill.training.students import STUDENTS, count_parameters, make_student


def test_kl_matches_hand_computed_value():
    # teacher probs (0.5, 0.5), student probs (0.25, 0.75)
    teacher = torch.log(torch.tensor([[0.5, 0.5]]))
    student = torch.log(torch.tensor([[0.25, 0.75]]))
    ts = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    st = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert kl_teacher_student(student, teacher).item() == pytest.approx(ts, rel=1e-6)
    assert kl_student_teacher(student, teacher).item() == pytest.approx(st, rel=1e-6)
    assert kl_teacher_student(teacher, teacher).item() == pytest.approx(0.0, abs=1e-7)


def test_relative_sobolev_distance_hand_computed():
    target = torch.zeros(1, 1, 4, 84, 84)
    target[0, 0, 0, 0, 0] = 3.0
    target[0, 0, 0, 0, 1] = 4.0  # ||g*||^2 = 25
    pred = torch.zeros_like(target)
    pred[0, 0, 0, 0, 0] = 3.0  # ||g - g*||^2 = 16
    assert sobolev_distance(pred, target, "relative").item() == pytest.approx(16 / 25)
    assert sobolev_distance(torch.zeros_like(target), target, "relative").item() == pytest.approx(1.0)
    assert sobolev_distance(pred, target, "squared_l2").item() == pytest.approx(16.0)
    assert sobolev_distance(pred, target, "mean_squared").item() == pytest.approx(16.0 / (4 * 84 * 84))
    # cosine: (3*3 + 0*4) / (3 * 5) = 0.6, so 1 - cos = 0.4; blind to the student's scale, 2 when opposite
    assert sobolev_distance(pred, target, "cosine").item() == pytest.approx(0.4)
    assert sobolev_distance(7 * pred, target, "cosine").item() == pytest.approx(0.4)
    assert sobolev_distance(-target, target, "cosine").item() == pytest.approx(2.0)


def test_students_registry_and_sizes():
    sizes = {name: count_parameters(make_student(name, 4)) for name in STUDENTS}
    assert sizes["small"] < sizes["paper"] < sizes["nature-half"] < sizes["nature"]
    assert sizes["nature-half"] == 882_084  # the teacher's convs (77,984 parameters) and 3136 * 256 + 256 * 4 + biases
    x = torch.rand(2, 4, 84, 84)
    assert make_student("paper", 6)(x).shape == (2, 6)
    with pytest.raises(UserError, match="unknown --activation 'gelu'; choose one of relu, silu"):
        make_student("paper", 4, "gelu")


def _input_gradient(student: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(student(x)[:, 0].sum(), x)[0]


@pytest.mark.parametrize("activation", ["silu", "tanh", "softplus"])
def test_smooth_students_have_input_gradients_that_move_with_the_input(activation):
    """Why the option exists: a ReLU student's input gradient is piecewise constant (a tiny step of the input leaves
    it exactly as it was), a smooth student's changes in proportion to the step."""
    torch.manual_seed(1)
    x, step = torch.rand(1, 4, 84, 84, dtype=torch.float64), 1e-6 * torch.randn(1, 4, 84, 84, dtype=torch.float64)
    torch.manual_seed(0)
    relu = make_student("small", 4).double()
    assert torch.equal(_input_gradient(relu, x), _input_gradient(relu, x + step))
    torch.manual_seed(0)
    smooth = make_student("small", 4, activation).double()
    # the same weights as the ReLU student (the activation holds no parameters): only the activation differs
    for a, b in zip(relu.parameters(), smooth.parameters()):
        assert torch.equal(a, b)
    assert sum(isinstance(m, type(smooth.head[1])) for m in smooth.modules()) == 3  # two conv layers and the hidden one
    change = _input_gradient(smooth, x + step) - _input_gradient(smooth, x)
    change_twice = _input_gradient(smooth, x + 2 * step) - _input_gradient(smooth, x)
    assert change.abs().max() > 0
    torch.testing.assert_close(change_twice, 2 * change, rtol=1e-3, atol=1e-12)


def test_alpha_zero_is_plain_kl_and_sobolev_term_is_zero_for_the_teacher_itself():
    torch.manual_seed(0)
    student = make_student("small", 4)
    x = torch.rand(3, 4, 84, 84)
    teacher_logits = torch.randn(3, 4)
    plain = distillation_loss(student, x, teacher_logits, alpha=0.0)
    assert plain.sobolev is None
    assert plain.total.item() == pytest.approx(kl_teacher_student(student(x), teacher_logits).item(), rel=1e-6)
    # a "teacher" identical to the student: its own recorded gradients give a zero Sobolev term
    dirs = random_unit_vectors(3, 2, 4)
    xr = x.clone().requires_grad_(True)
    own = input_gradients(torch.log_softmax(student(xr), 1), xr, dirs, create_graph=False)
    same = distillation_loss(student, x, student(x).detach(), alpha=1.0, directions=dirs, teacher_grads=own,
                             distance="relative")
    assert same.sobolev.item() == pytest.approx(0.0, abs=1e-10)
    assert same.kl.item() == pytest.approx(0.0, abs=1e-6)
    other = distillation_loss(student, x, teacher_logits, alpha=2.0, directions=dirs, teacher_grads=-own,
                              distance="relative")
    assert other.sobolev.item() == pytest.approx(4.0, rel=1e-5)  # ||2g||^2 / ||g||^2
    # the default distance is the training default, cosine: 0 for the same direction, 2 for the opposite one
    assert distillation_loss(student, x, teacher_logits, 1.0, dirs, own).sobolev.item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(student, x, teacher_logits, 1.0, dirs, -own).sobolev.item() == pytest.approx(2.0, rel=1e-5)
    other.total.backward()
    assert all(p.grad is not None for p in student.parameters())


def test_cosine_distance_equals_torch_cosine_similarity_in_value_and_gradient():
    torch.manual_seed(0)
    student = torch.randn(5, 2, 4, 84, 84, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(5, 2, 4, 84, 84, dtype=torch.float64)
    ours = sobolev_distance(student, teacher, "cosine")
    (ours_grad,) = torch.autograd.grad(ours, student)
    reference = (1 - torch.nn.functional.cosine_similarity(student.flatten(2), teacher.flatten(2), dim=-1)).mean()
    (reference_grad,) = torch.autograd.grad(reference, student)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-12)
    torch.testing.assert_close(ours_grad, reference_grad, rtol=1e-10, atol=1e-14)
    zero = torch.zeros(1, 1, 3, requires_grad=True)  # a student whose input gradient vanishes: distance 1, finite
    distance = sobolev_distance(zero, torch.tensor([[[1.0, 2.0, 2.0]]]), "cosine")
    distance.backward()
    assert distance.item() == 1.0 and torch.isfinite(zero.grad).all()
