"""Every learner and baseline × malformed inputs: always an eqprop error, never a bare torch or Python one.

Each case breaks one thing of a valid (model, x, y) of tests/catalogue.py — the input's type,
axes, batch, width, dtype, device, finiteness; the target's batch, shape, finiteness; a
parameter — and calls ``grads`` (and ``predict`` where only the input matters). The assertion
is the exception's class: :class:`eqprop.errors.EqpropError` (a bare RuntimeError, TypeError,
IndexError or AttributeError fails the test with its own traceback).
"""

from __future__ import annotations

import pytest
import torch

from eqprop import baselines, learners
from eqprop.errors import EqpropError
from eqprop.estimators import Learner

from catalogue import CATALOGUE


def _input_cases():
    def nan(x):
        x = x.clone()
        x.view(-1)[0] = float("nan")
        return x

    def inf(x):
        x = x.clone()
        x.view(-1)[-1] = float("inf")
        return x

    return {
        "not a tensor": lambda x: x.tolist(),
        "empty batch": lambda x: x[:0],
        "one axis": lambda x: x.reshape(-1),
        "scalar": lambda x: x.reshape(-1)[0],
        "width doubled": lambda x: torch.cat([x, x], dim=-1),
        "extra axis": lambda x: x.unsqueeze(-1),
        "integer": lambda x: (10 * x).long(),
        "bool": lambda x: x > 0.5,
        "complex": lambda x: x.to(torch.complex128),
        "float32 against float64 model": lambda x: x.float(),
        "NaN": nan,
        "inf": inf,
        "meta device": lambda x: x.to("meta"),
    }


def _target_cases():
    def nan(y):
        y = y.clone()
        y.view(-1)[0] = float("nan")
        return y

    return {
        "not a tensor": lambda y: y.tolist(),
        "batch of one": lambda y: y[:1],
        "scalar": lambda y: y.reshape(-1)[0],
        "width one": lambda y: y[..., :1],
        "NaN": nan,
        "meta device": lambda y: y.to("meta"),
        "complex": lambda y: y.to(torch.complex128),
    }


INPUTS = _input_cases()
# Cases that are malformed only for some kinds: a static model flattens trailing axes (an image
# [B, 1, 8, 8] is 64 features); a feedforward model refuses a width its first layer cannot read.
SHAPE_CASES = {"width doubled": ("static", "sequence", "feedforward"), "extra axis": ("sequence",)}
TARGETS = _target_cases()
IDS = [e.name for e in CATALOGUE]


def test_catalogue_is_complete():
    """Every learner and baseline the package exports is fuzzed here."""
    exported = {
        name for module in (learners, baselines) for name in module.__all__
        if isinstance(getattr(module, name), type) and issubclass(getattr(module, name), Learner)
        and getattr(module, name) is not Learner
    }
    covered = {e.name.split(" ")[0] for e in CATALOGUE}
    assert exported <= covered, f"add {sorted(exported - covered)} to tests/catalogue.py"


@pytest.mark.parametrize("entry", CATALOGUE, ids=IDS)
def test_malformed_inputs_get_eqprop_errors(entry):
    torch.manual_seed(0)
    model, x, y = entry.problem()
    learner = entry.learner()
    for case, breaks in INPUTS.items():
        if case in SHAPE_CASES and entry.kind not in SHAPE_CASES[case]:
            continue
        bad = breaks(x)
        with pytest.raises(EqpropError):
            learner.grads(model, bad, y)
        with pytest.raises(EqpropError):
            learner.predict(model, bad)
    for case, breaks in TARGETS.items():
        with pytest.raises(EqpropError):
            learner.grads(model, x, breaks(y))


@pytest.mark.parametrize("entry", CATALOGUE, ids=IDS)
def test_broken_models_get_eqprop_errors(entry):
    """A NaN parameter (named in the message), a model on the meta device, a model with no parameters left to train."""
    torch.manual_seed(0)
    model, x, y = entry.problem()
    learner = entry.learner()
    name, param = next(iter(model.named_parameters()))
    with torch.no_grad():
        saved = param.clone()
        param.view(-1)[0] = float("nan")
    for call in (lambda: learner.grads(model, x, y), lambda: learner.predict(model, x)):
        with pytest.raises(EqpropError, match=name.replace(".", r"\.")):
            call()
    with torch.no_grad():
        param.copy_(saved)
    with pytest.raises(EqpropError, match="meta"):
        learner.grads(model.to("meta"), x, y)


@pytest.mark.parametrize("entry", CATALOGUE, ids=IDS)
def test_valid_edge_cases_run(entry):
    """A batch of one, and calls under torch.no_grad() / torch.inference_mode(), work and agree."""
    torch.manual_seed(0)
    model, x, y = entry.problem()
    learner = entry.learner()
    reference = learner.grads(model, x, y)
    with torch.no_grad():
        quiet = learner.grads(model, x, y)
    with torch.inference_mode():
        inferred = learner.grads(model, x.clone(), y.clone())
        prediction = learner.predict(model, x.clone())
    for name in reference:
        # The same computation three times: equal to round-off (1e-12 relative, float64).
        scale = float(reference[name].abs().max()) + 1e-30
        assert float((quiet[name] - reference[name]).abs().max()) <= 1e-12 * scale
        assert float((inferred[name] - reference[name]).abs().max()) <= 1e-12 * scale
    assert torch.isfinite(prediction).all()
    single = learner.grads(model, x[:1], y[:1])
    assert set(single) == set(reference)
