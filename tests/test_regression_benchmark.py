"""The regression benchmark script: outputs, schema, resume, and that gradients help on a smooth function."""

from __future__ import annotations

import csv

import pytest
import torch

from distill.benchmarks.functions import FUNCTIONS
from distill.benchmarks.regression import RegressionConfig, fit_regressor, run_regression

from script_helpers import one_line_error, script_module


def test_function_gradients_match_finite_differences():
    x = torch.tensor([[0.3, -1.2], [2.0, 0.5]], dtype=torch.float64)
    for func in FUNCTIONS.values():
        lo = torch.tensor([d[0] for d in func.domain], dtype=torch.float64)
        hi = torch.tensor([d[1] for d in func.domain], dtype=torch.float64)
        pts = lo + (hi - lo) * (x - x.min()) / (x.max() - x.min()) * 0.8 + (hi - lo) * 0.1
        _, grad = func.values_and_gradients(pts)
        for i in range(2):
            step = torch.zeros_like(pts)
            step[:, i] = 1e-6
            fd = (func.fn(pts + step) - func.fn(pts - step)) / 2e-6
            torch.testing.assert_close(grad[:, i], fd, rtol=1e-4, atol=1e-4)


def test_quick_run_writes_results_summary_and_figure_and_resumes(tmp_path, capsys):
    script = script_module("regression_benchmark")
    args = ["--out", str(tmp_path), "--quick", "--functions", "booth", "mccormick", "--steps", "30"]
    assert script.main(args) == 0
    with (tmp_path / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {"function", "n_train", "method", "seed", "test_mse", "test_grad_mse"} <= set(rows[0])
    keys = {(r["function"], r["n_train"], r["method"], r["seed"]) for r in rows}
    assert len(rows) == len(keys) == 2 * 2 * 2
    assert {r["method"] for r in rows} == {"regular", "sobolev"}
    assert all(float(r["test_mse"]) >= 0 for r in rows)
    assert (tmp_path / "summary.md").read_text().count("| booth |") == 1
    assert (tmp_path / "figure2.png").stat().st_size > 1000
    capsys.readouterr()
    assert script.main(args) == 0  # everything is already done: nothing recomputed
    assert "0 runs in" in capsys.readouterr().out
    with (tmp_path / "results.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 8


def test_gradients_help_on_a_quadratic_with_few_points():
    cfg = RegressionConfig(steps=300, n_test=1000)
    regular = run_regression(FUNCTIONS["booth"], 20, "regular", 0, cfg)
    sobolev = run_regression(FUNCTIONS["booth"], 20, "sobolev", 0, cfg)
    assert sobolev["test_grad_mse"] < regular["test_grad_mse"]
    assert sobolev["test_mse"] < regular["test_mse"]


def test_bad_flags_give_one_line_errors(tmp_path, capsys):
    script = script_module("regression_benchmark")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cases = ((["--jobs", "0"], "--jobs must be at least 1"), (["--steps", "-1"], "--steps must be at least 1"),
             (["--out", str(blocker / "out"), "--quick"], "choose a writable --out"))
    for argv, message in cases:
        assert message in one_line_error(script.main, argv if "--out" in argv else ["--out", str(tmp_path / "out")] + argv,
                                         capsys)
    assert not (tmp_path / "out").exists()  # nothing written before the flags were checked


def test_training_curves_split_the_loss_and_both_methods_start_from_the_same_point():
    """At step 0 both methods hold the same weights and batch, so the curve's two terms agree; regular's gradient
    term is only measured, so it is not what its training lowers, and the last point is the final loss."""
    cfg = RegressionConfig(steps=40, n_test=100, activation="tanh")
    regular = fit_regressor(FUNCTIONS["booth"], 20, "regular", 0, cfg, curve_every=10)
    sobolev = fit_regressor(FUNCTIONS["booth"], 20, "sobolev", 0, cfg, curve_every=10)
    assert [c[0] for c in regular.curve] == [0, 10, 20, 30, 39]
    assert regular.curve[0] == sobolev.curve[0]
    assert regular.curve[-1][1] == regular.final_loss  # regular trains on the value term alone
    # sobolev trains on the sum; its gradient term falls further than regular's measured one
    assert sobolev.curve[-1][1] + sobolev.curve[-1][2] == pytest.approx(sobolev.final_loss, rel=1e-6)
    assert sobolev.curve[-1][2] < regular.curve[-1][2]
    # the curve costs evaluations, not results: the same fit without it
    plain = fit_regressor(FUNCTIONS["booth"], 20, "regular", 0, cfg)
    for a, b in zip(plain.model.parameters(), regular.model.parameters()):
        assert torch.equal(a, b)


def test_figure3_script_writes_the_surfaces_and_the_curves(tmp_path):
    script = script_module("regression_figure3")
    assert script.main(["--out", str(tmp_path), "--steps", "6", "--curve-every", "3", "--grid", "8"]) == 0
    with (tmp_path / "training-loss.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    # 2 activations x 2 sizes x 2 methods, at steps 0, 3 and 5
    assert {(r["activation"], r["n_train"], r["method"]) for r in rows} == {
        (a, n, m) for a in ("relu", "tanh") for n in ("20", "100") for m in ("regular", "sobolev")}
    assert len(rows) == 8 * 3
    assert (tmp_path / "figure3.png").stat().st_size > 1000 and (tmp_path / "training-loss.png").stat().st_size > 1000
