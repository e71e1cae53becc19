"""The check harness: compare reports and β sweeps (the tool every gradient test relies on)."""

import pytest

from eqprop.baselines import ImplicitDifferentiation
from eqprop.check import beta_sweep, compare, log_log_slope, relative_error
from eqprop.errors import ConfigurationError
from eqprop.learners import EP
from problems import PROBLEMS


def test_log_log_slope_of_a_power_law():
    xs = [1e-1, 1e-2, 1e-3]
    assert log_log_slope(xs, [3 * x**2 for x in xs]) == pytest.approx(2.0, abs=1e-12)


def test_relative_error_and_compare_report():
    problem = PROBLEMS[0]
    model, (x, y) = problem.model(), problem.data()
    reference = ImplicitDifferentiation(solver=problem.solver)
    report = compare(EP(1e-2, "positive", solver=problem.solver), reference, model, x, y)
    assert [r.name for r in report.rows] == [n for n, _ in model.named_parameters()]
    # Whole-model error is the norm-weighted combination of the rows: between min and max row.
    errors = [r.relative_error for r in report.rows]
    assert min(errors) <= report.relative_error <= max(errors)
    assert report.relative_error == pytest.approx(relative_error(report.grads_a, report.grads_b))
    assert 0.99 < report.cosine <= 1.0  # O(β) error at β = 1e-2 leaves the direction intact
    assert "layers.0.weight" in str(report) and "(all)" in str(report)
    # A reference against itself: zero error, cosine one.
    self_report = compare(reference, reference, model, x, y)
    assert self_report.relative_error < 1e-14 and self_report.cosine == pytest.approx(1.0)


def test_sweep_plot_writes_a_png(tmp_path):
    problem = PROBLEMS[0]
    model, (x, y) = problem.model(), problem.data()
    sweep = beta_sweep(lambda b: EP(b, "centered", solver=problem.solver), ImplicitDifferentiation(solver=problem.solver),
                       model, x, y, betas=[1e-1, 1e-2])
    path = tmp_path / "sweep.png"
    sweep.plot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "empirical order" in str(sweep)


def test_sweep_rejects_bad_betas():
    with pytest.raises(ConfigurationError, match="at least two positive"):
        beta_sweep(lambda b: EP(b), None, None, None, None, betas=[0.1])
