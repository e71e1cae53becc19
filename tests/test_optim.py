"""eqprop.optim: BinaryFlip (Laydevant et al. 2021) and MetaplasticAdam (Laborieux et al. 2021).

Sign convention: p.grad is dL/dp, so descent wants −grad; a weight "wants" the other sign where
sign(p)·grad > 0, and BinaryFlip flips there once the momentum exceeds the threshold.
"""

from __future__ import annotations

import math

import pytest
import torch

from eqprop.baselines import Backprop
from eqprop.costs import CrossEntropy
from eqprop.errors import ConfigurationError, NonFiniteError, ShapeError
from eqprop.models import BinarizedMLP, BinaryHopfieldMLP
from eqprop.models.binarized import sign_ste
from eqprop.optim import BinaryFlip, MetaplasticAdam, param_groups
from eqprop.optim.metaplastic import meta_factor


def weights_and_grads(shape=(7, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randn(shape, generator=g, dtype=torch.float64)


# -- BinaryFlip ------------------------------------------------------------------------------------
def test_gamma_one_threshold_zero_flips_exactly_where_grad_and_weight_agree_in_sign():
    w, g = weights_and_grads()
    p = torch.nn.Parameter(w.clone())
    opt = BinaryFlip([p], gamma=1.0, threshold=0.0)
    p.grad = g.clone()
    opt.step()
    expected = torch.sign(g) == torch.sign(w)
    assert torch.equal(p.detach() == -w, expected) and torch.equal(p.detach() == w, ~expected)
    assert opt.last_flips == opt.total_flips == int(expected.sum()) == int(opt.state[p]["flips"])


def test_infinite_threshold_never_flips_and_the_momentum_is_kept_after_a_flip():
    w, _ = weights_and_grads()
    p, q = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    never, flipping = BinaryFlip([p], gamma=0.3, threshold=math.inf), BinaryFlip([q], gamma=0.3, threshold=0.0)
    momentum = torch.zeros_like(w)
    for seed in range(20):
        _, g = weights_and_grads(seed=seed + 1)
        p.grad, q.grad = g.clone(), g.clone()
        never.step(), flipping.step()
        momentum = 0.7 * momentum + 0.3 * g  # m ← (1 − γ)m + γ g, never reset
    assert torch.equal(p.detach(), w) and never.total_flips == 0
    assert torch.allclose(flipping.state[q]["momentum"], momentum, rtol=1e-14, atol=1e-15)  # round-off
    assert flipping.total_flips > 0 and torch.equal(q.detach().abs(), w.abs())  # flips change signs only


def test_flip_counts_add_up_to_the_sign_changes():
    w, _ = weights_and_grads()
    p = torch.nn.Parameter(w.clone())
    opt = BinaryFlip([p], gamma=0.5, threshold=0.1)
    total, previous = 0, w.clone()
    for seed in range(10):
        p.grad = weights_and_grads(seed=seed + 5)[1]
        opt.step()
        changed = int((torch.sign(p.detach()) != torch.sign(previous)).sum())
        assert opt.last_flips == changed
        total += changed
        previous = p.detach().clone()
    assert opt.total_flips == total > 0


def test_real_groups_get_sgd_and_param_groups_split_the_binary_weights():
    torch.manual_seed(0)
    model = BinaryHopfieldMLP([4, 3, 2], learn_alpha=True).double()
    groups = param_groups(model)
    assert [(g["binary"], g["scale"]) for g in groups] == [(True, False), (False, True), (False, False)]
    assert groups[0]["names"] == ["layers.0.weight", "layers.1.weight"]
    assert groups[1]["names"] == ["alpha.0", "alpha.1"] and set(groups[2]["names"]) == {"layers.0.bias", "layers.1.bias"}
    opt = BinaryFlip(groups, gamma=1.0, threshold=math.inf, lr=0.1, scale_lr=1e-3)
    bias, alpha = model.layers[0].bias.detach().clone(), model.alpha[0].detach().clone()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    assert torch.allclose(model.layers[0].bias, bias - 0.1)  # p ← p − lr·g
    assert torch.allclose(model.alpha[0], alpha - 1e-3)  # the scales with scale_lr
    assert isinstance(param_groups(torch.nn.Linear(2, 2)), list)  # other models: plain parameters
    assert [g["binary"] for g in param_groups(BinarizedMLP([4, 3, 2]))] == [True, False]  # weights, BatchNorm


@pytest.mark.parametrize("kw,match", [
    ({"gamma": 0.0, "threshold": 0.0}, "gamma"), ({"gamma": 1.5, "threshold": 0.0}, "gamma"),
    ({"gamma": 0.5, "threshold": -1e-3}, "threshold"), ({"gamma": float("nan"), "threshold": 0.0}, "gamma"),
])
def test_binary_flip_refuses_bad_hyper_parameters(kw, match):
    with pytest.raises(ConfigurationError, match=match):
        BinaryFlip([torch.nn.Parameter(torch.ones(2))], **kw)


@pytest.mark.parametrize("make", [lambda g: BinaryFlip(g, gamma=1.0, threshold=0.0),
                                  lambda g: MetaplasticAdam(g, meta=1.0)], ids=["flip", "meta-adam"])
def test_non_finite_gradient_names_the_parameter_and_changes_nothing(make):
    torch.manual_seed(0)
    model = BinaryHopfieldMLP([4, 3, 2]).double()
    opt = make(param_groups(model))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    model.layers[1].weight.grad[0, 0] = math.nan
    with pytest.raises(NonFiniteError, match="'layers.1.weight'"):
        opt.step()
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


# -- MetaplasticAdam ---------------------------------------------------------------------------
def test_meta_zero_is_torch_adam():
    w, _ = weights_and_grads()
    p, q = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    ours = MetaplasticAdam([p], lr=0.01, meta=0.0, weight_decay=1e-3)
    adam = torch.optim.Adam([q], lr=0.01, weight_decay=1e-3)
    for seed in range(50):
        g = weights_and_grads(seed=seed + 1)[1]
        p.grad, q.grad = g.clone(), g.clone()
        ours.step(), adam.step()
    # The same formula with ε after the bias correction, as torch's; only the order of the
    # floating-point operations differs: a few ulps per step over 50 steps → 1e-13 relative.
    assert torch.allclose(p, q, rtol=1e-13, atol=1e-15)


def test_meta_factor_lies_in_zero_one():
    w = torch.linspace(-4.0, 4.0, 801, dtype=torch.float64)
    for meta in (0.0, 0.5, 1.35, 3.0):
        f = meta_factor(w, meta)
        # 0 < 1 − tanh²(m|W|) ≤ 1 (m|W| ≤ 12 here: in float64 it underflows to 0 only past ~19).
        assert bool((f > 0).all()) and bool((f <= 1).all())
        assert torch.equal(f[400], torch.tensor(1.0, dtype=torch.float64))  # W = 0: never attenuated


def test_steps_that_increase_the_magnitude_are_never_attenuated():
    w, g = weights_and_grads(shape=(40, 30))
    p, q = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    meta, plain = MetaplasticAdam([p], lr=0.01, meta=5.0), MetaplasticAdam([q], lr=0.01, meta=0.0)
    p.grad, q.grad = g.clone(), g.clone()
    meta.step(), plain.step()
    plain_step, meta_step = q.detach() - w, p.detach() - w
    grows = plain_step * torch.sign(w) > 0  # the step moves away from zero
    assert grows.any() and (~grows).any()
    assert torch.equal(meta_step[grows], plain_step[grows])
    # Toward zero: the step is scaled by 1 − tanh²(m|W|) exactly (round-off).
    assert torch.allclose(meta_step[~grows], (plain_step * meta_factor(w, 5.0))[~grows], rtol=1e-12)


def test_large_meta_keeps_a_sign_against_a_constant_adversarial_gradient():
    # W = 0.5 and a constant dL/dW = 1 pushing it toward −: Adam's steps are ≈ lr = 0.005, so m = 0
    # crosses zero after ≈ 100 steps; with m = 5 the speed is lr·sech²(5W), and crossing takes
    # (1/lr)∫₀^0.5 cosh²(5W) dW = (0.25 + sinh(5)/20)/0.005 ≈ 790 steps.
    steps = 200
    crossed = {}
    for meta in (0.0, 5.0):
        p = torch.nn.Parameter(torch.full((3, 3), 0.5, dtype=torch.float64))
        opt = MetaplasticAdam([p], lr=0.005, meta=meta)
        for _ in range(steps):
            p.grad = torch.ones_like(p)
            opt.step()
        crossed[meta] = bool((p < 0).all())
    assert crossed == {0.0: True, 5.0: False}


def test_meta_applies_to_weights_not_to_vectors_without_groups():
    w, g = torch.full((3,), 0.8, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    p, q = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    for opt, t in ((MetaplasticAdam([p], meta=10.0), p), (MetaplasticAdam([q]), q)):
        t.grad = g.clone()
        opt.step()
    assert torch.equal(p, q)  # a bias (1-D) gets plain Adam


@pytest.mark.parametrize("kw,match", [({"meta": -0.1}, "meta"), ({"lr": -1.0}, "lr"), ({"betas": (0.9, 1.0)}, "betas")])
def test_metaplastic_adam_refuses_bad_hyper_parameters(kw, match):
    with pytest.raises(ConfigurationError, match=match):
        MetaplasticAdam([torch.nn.Parameter(torch.ones(2))], **kw)


# -- BinarizedMLP --------------------------------------------------------------------------------
def test_sign_ste_gradient_is_zeroed_outside_the_unit_box():
    a = torch.tensor([-2.0, -0.5, 0.0, 0.7, 1.0, 1.5], requires_grad=True)
    out = sign_ste(a)
    out.sum().backward()
    assert torch.equal(out.detach(), torch.tensor([-1.0, -1.0, 1.0, 1.0, 1.0, 1.0]))
    assert torch.equal(a.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 0.0]))


def test_binarized_mlp_uses_signs_no_biases_no_running_statistics():
    torch.manual_seed(0)
    model = BinarizedMLP([6, 5, 3])
    assert all(layer.bias is None for layer in model.layers) and len(list(model.buffers())) == 0
    x = torch.randn(8, 6)
    with torch.no_grad():
        h = torch.nn.functional.batch_norm(x @ torch.sign(model.layers[0].weight).T, None, None,
                                           model.norms[0].weight, model.norms[0].bias, training=True)
        expected = model.norms[1](torch.where(h >= 0, 1.0, -1.0) @ torch.sign(model.layers[1].weight).T)
    model.eval()  # evaluation normalises with the batch statistics too
    assert torch.allclose(model(x), expected, atol=1e-6)
    with pytest.raises(ShapeError):
        model(torch.randn(2, 7))


def test_binarized_mlp_learns_digits_with_backprop_and_metaplastic_adam():
    from eqprop.data import load_digits

    torch.manual_seed(0)
    data = load_digits(seed=0)
    x, y = data.train.tensors
    model = BinarizedMLP([64, 256, 10]).float()
    learner, opt = Backprop(cost=CrossEntropy()), MetaplasticAdam(param_groups(model), lr=0.005, meta=1.35)
    for epoch in range(3):
        for batch in torch.randperm(len(y)).split(100):
            opt.zero_grad()
            learner.step(model, x[batch], y[batch])
            opt.step()
    tx, ty = data.test.tensors
    accuracy = (learner.predict(model, tx).argmax(1) == ty).float().mean().item()
    # A 64-256-10 BNN reaches ≈ 90 % on digits in 3 epochs (measured); chance is 10 %.
    assert accuracy > 0.8, accuracy


def test_public_signatures_keep_their_documented_names():
    import inspect

    flip = inspect.signature(BinaryFlip).parameters
    assert list(flip)[:3] == ["params", "gamma", "threshold"]
    meta = inspect.signature(MetaplasticAdam).parameters
    assert {k: v.default for k, v in meta.items() if k != "params"} == {
        "lr": 0.005, "meta": 0.0, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    model = inspect.signature(BinaryHopfieldMLP).parameters
    assert list(model)[:3] == ["sizes", "activation", "binary_activations"]
    assert model["activation"].default == "hard_sigmoid" and model["binary_activations"].default is False
