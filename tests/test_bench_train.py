"""scripts/bench_train.py's ways to compute a Sobolev step: each gives today's loss and parameter gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from distill.training.students import make_student
from script_helpers import script_module

bench = script_module("bench_train")


@pytest.mark.parametrize("name", [n for n in bench.VARIANTS if n != "torch.compile"])  # compile fails, and slowly
def test_each_sobolev_variant_gives_the_double_backward_loss_and_gradients(name):
    torch.manual_seed(1)
    obs, logits = torch.rand(6, 4, 84, 84), torch.randn(6, 4)
    dirs, grads = F.normalize(torch.randn(6, 1, 4), dim=-1), torch.randn(6, 1, 4, 84, 84)

    def run(variant, prepare, params_only):
        torch.manual_seed(0)
        student = make_student("paper", 4)
        model = student if prepare is None else prepare(student)
        target, loss = variant(model, obs, logits, dirs, grads)
        target.backward(inputs=list(student.parameters()) if params_only else None)
        return loss.item(), [p.grad.contiguous() for p in student.parameters()]

    reference_loss, reference = run(bench.double_backward, None, False)  # a bare backward(), as training was
    loss, got = run(*bench.VARIANTS[name])
    assert loss == pytest.approx(reference_loss, rel=1e-5)
    for a, b in zip(got, reference, strict=True):
        assert a.shape == b.shape and (a - b).abs().max() <= 1e-5 * b.abs().max()


def test_space_to_depth_conv_is_the_strided_conv():
    torch.manual_seed(0)
    for channels, kernel, stride, size in ((4, 8, 4, 84), (16, 4, 2, 20)):
        conv = torch.nn.Conv2d(channels, 8, kernel, stride=stride)
        s2d = bench.SpaceToDepthConv2d(channels, 8, kernel, stride=stride)
        s2d.load_state_dict(conv.state_dict())
        x = torch.rand(3, channels, size, size)
        torch.testing.assert_close(s2d(x), conv(x), rtol=1e-5, atol=1e-6)
