"""Binary EP (Laydevant et al. 2021): BinaryHopfieldMLP / BinaryConvHopfield, float64.

Theory: with binary weights and real units the energy is an ordinary Hopfield energy in the
*used* weights Ŵ = α·sign(W), and every gradient w.r.t. the latent W is the straight-through
∂/∂Ŵ. So implicit differentiation and BPTT agree to round-off, EP's bias against them is O(β)
one-sided and O(β²) centered (slope test), and any learner on the binary model returns exactly
what it returns on a full-precision HopfieldMLP holding the used weights.
"""

from __future__ import annotations

import pytest
import torch

from eqprop.baselines import BPTT, ImplicitDifferentiation
from eqprop.check import beta_sweep, compare
from eqprop.errors import ConfigurationError, NotHolomorphicError
from eqprop.learners import EP, ContrastiveLearning, CoupledLearning, HolomorphicEP
from eqprop.models import BinaryConvHopfield, BinaryHopfieldMLP, HopfieldMLP
from eqprop.solvers import FixedPoint

BETAS = [1e-2, 3e-3, 1e-3]
SOLVER = FixedPoint(tol=1e-14, max_steps=3000)
VARIANTS = [
    {},
    {"learn_alpha": True},
    {"binary_activations": True},
    {"binary_activations": True, "neurons_per_class": 3, "learn_alpha": True},
    {"binary_activations": True, "box": True},
]


def data(n_in=5, n_out=3, batch=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n_in, generator=g, dtype=torch.float64), torch.rand(batch, n_out, generator=g, dtype=torch.float64)


def binary_model(seed=0, activation="sigmoid", **kw):
    torch.manual_seed(seed)
    return BinaryHopfieldMLP([5, 4, 3], activation, init_scale=2.0, **kw).double()


def twin(model):
    """A full-precision HopfieldMLP holding the binary model's used weights and its biases."""
    full = HopfieldMLP(model.sizes, [a.name for a in model.activations]).double()
    used = model.used_weights()
    with torch.no_grad():
        for k, layer in enumerate(full.layers):
            layer.weight.copy_(used[f"layers.{k}.weight"])
            layer.bias.copy_(model.layers[k].bias)
    return full


def test_used_weights_are_plus_minus_alpha_with_alpha_the_initial_mean_magnitude():
    torch.manual_seed(0)
    model = BinaryHopfieldMLP([7, 6, 4])
    for k, layer in enumerate(model.layers):
        alpha = layer.weight.abs().mean()
        assert torch.equal(model.alpha[k], alpha)
        assert torch.equal(model.used_weights()[f"layers.{k}.weight"].abs(), alpha.expand_as(layer.weight))
        assert torch.equal(torch.sign(model.used_weights()[f"layers.{k}.weight"]), torch.where(layer.weight >= 0, 1.0, -1.0))
    assert model.binary_weight_names() == ["layers.0.weight", "layers.1.weight"]
    conv = BinaryConvHopfield(in_channels=1, channels=[3], n_classes=2, input_size=6)
    # One α per output channel of the convolution, one for the dense output layer.
    assert conv.alpha[0].shape == (3,) and conv.alpha[1].shape == ()
    assert torch.equal(conv.alpha[0], conv.convs[0].weight.abs().flatten(1).mean(1))


@pytest.mark.parametrize("kw", VARIANTS, ids=lambda kw: ",".join(kw) or "bin_W")
def test_closed_forms_equal_autograd(kw):
    act = "hard_sigmoid" if kw.get("binary_activations") else "sigmoid"
    closed, auto = binary_model(activation=act, **kw), binary_model(activation=act, closed_form=False, **kw)
    x, _ = data()
    gen = torch.Generator().manual_seed(1)
    state = tuple(torch.rand(s.shape, generator=gen, dtype=s.dtype) for s in closed.init_state(x))
    weights = torch.rand(x.shape[0], generator=gen, dtype=torch.float64)
    with torch.no_grad():
        d1, d2 = closed.primitive_grad(state, x), auto.primitive_grad(state, x)
    g1, g2 = closed.param_grads(state, x, weights), auto.param_grads(state, x, weights)
    # The same sums in a different order: round-off, 1e-13 relative.
    for a, b in zip(d1, d2):
        assert torch.allclose(a, b, rtol=1e-13, atol=1e-13)
    assert sorted(g1) == sorted(g2) and (("alpha.0" in g1) == bool(kw.get("learn_alpha")))
    for name in g1:
        assert torch.allclose(g1[name], g2[name], rtol=1e-13, atol=1e-13), name


@pytest.mark.parametrize("kw", VARIANTS + [{"conv": True}], ids=lambda kw: ",".join(kw) or "bin_W")
def test_block_drives_of_the_asynchronous_sweep_use_the_used_weights(kw):
    if kw.get("conv"):
        torch.manual_seed(0)
        model = BinaryConvHopfield(in_channels=1, channels=[2, 3], n_classes=3, input_size=6, pooling="max").double()
        x = torch.randn(4, 1, 6, 6, dtype=torch.float64)
    else:
        model = binary_model(activation="hard_sigmoid" if kw.get("binary_activations") else "sigmoid", **kw)
        x, _ = data()
    gen = torch.Generator().manual_seed(3)
    state = tuple(torch.rand(s.shape, generator=gen, dtype=s.dtype) for s in model.init_state(x))
    with torch.no_grad():
        full = model.primitive_grad(state, x)
        for block in ([0], [1], [0, 1], [-1]):
            drive = model.layer_drive(state, x, block, cache={})
            for k, d in enumerate(drive):
                if k in {b % len(state) for b in block}:
                    # The same closed form restricted to a block: round-off.
                    assert torch.allclose(d, full[k], rtol=1e-13, atol=1e-13), (block, k)
                else:
                    assert d is None


def test_conv_closed_forms_equal_autograd_and_alpha_is_per_channel():
    kw = dict(in_channels=1, channels=[2, 3], n_classes=3, input_size=6, pooling="avg", activation="sigmoid", learn_alpha=True)
    torch.manual_seed(0)
    closed = BinaryConvHopfield(**kw).double()
    torch.manual_seed(0)
    auto = BinaryConvHopfield(closed_form=False, **kw).double()
    x = torch.randn(4, 1, 6, 6, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    state = tuple(torch.rand(s.shape, generator=gen, dtype=s.dtype) for s in closed.init_state(x))
    weights = torch.rand(4, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        for a, b in zip(closed.primitive_grad(state, x), auto.primitive_grad(state, x)):
            assert torch.allclose(a, b, rtol=1e-13, atol=1e-13)  # round-off
    g1, g2 = closed.param_grads(state, x, weights), auto.param_grads(state, x, weights)
    assert g1["alpha.0"].shape == (2,) and g1["alpha.2"].shape == ()
    for name in g2:
        assert torch.allclose(g1[name], g2[name], rtol=1e-12, atol=1e-13), name


def test_gradients_are_those_of_the_used_weights():
    model = binary_model()
    x, y = data()
    reference = ImplicitDifferentiation(solver=SOLVER)
    binary, full = reference.grads(model, x, y), reference.grads(twin(model), x, y)
    # The same energy, relaxation and linear solve on the same numbers: round-off.
    for name, g in full.items():
        assert torch.allclose(binary[name], g, rtol=1e-10, atol=1e-14), name


def test_bptt_equals_implicit_differentiation():
    model = binary_model(learn_alpha=True)
    x, y = data()
    report = compare(BPTT(solver=SOLVER), ImplicitDifferentiation(solver=SOLVER), model, x, y)
    # Both differentiate the same converged equilibrium (residual ≤ 1e-14): round-off → 1e-9.
    assert report.relative_error < 1e-9, str(report)
    assert report["alpha.0"].norm_b > 0  # the learned scales are part of the check


@pytest.mark.parametrize("variant,order", [("positive", 1.0), ("negative", 1.0), ("centered", 2.0)])
def test_ep_error_order_on_binary_weights(variant, order):
    model = binary_model(learn_alpha=True)
    x, y = data()
    sweep = beta_sweep(lambda b: EP(b, variant, solver=SOLVER), ImplicitDifferentiation(solver=SOLVER), model, x, y, BETAS)
    # Slope of log(error) in log(β): 1 one-sided, 2 centered, ±0.1 from higher-order terms.
    assert abs(sweep.order - order) < 0.1, str(sweep)
    # And the size: K ≤ 10 (measured K ≈ 0.06 one-sided, 0.07 centered here).
    assert sweep.errors[-1] < 10 * BETAS[-1] ** order, str(sweep)


@pytest.mark.parametrize("make", [
    lambda: EP(0.05, "random_sign", solver=SOLVER, seed=3),
    lambda: ContrastiveLearning(solver=SOLVER),
    lambda: CoupledLearning(0.05, "centered", solver=SOLVER),
], ids=["ep-random-sign", "cl", "cpl"])
def test_every_learner_sees_the_used_weights(make):
    model = binary_model()
    x, y = data()
    binary, full = make().grads(model, x, y), make().grads(twin(model), x, y)
    assert sorted(binary) == sorted(full)
    # The binary model is the full-precision twin with straight-through gradients: round-off.
    for name, g in full.items():
        assert torch.allclose(binary[name], g, rtol=1e-10, atol=1e-14), name


def test_binary_neurons_follow_the_low_pass_dynamics():
    model = binary_model(activation="hard_sigmoid", binary_activations=True, low_pass=0.3)
    x, _ = data()
    gen = torch.Generator().manual_seed(2)
    state = tuple(torch.rand(s.shape, generator=gen, dtype=s.dtype) for s in model.init_state(x))
    new = FixedPoint(tol=None, max_steps=1).solve(model, x, state)[0]
    # The paper's update: p from h = Θ(s − ½), then s ← clip01((1 − γ_n)s + γ_n p).
    h = [(s > 0.5).double() for s in state]
    used = model.used_weights()
    w0, w1 = used["layers.0.weight"], used["layers.1.weight"]
    b0, b1 = model.layers[0].bias, model.layers[1].bias
    p = [x @ w0.T + b0 + h[1] @ w1, h[0] @ w1.T + b1]
    for s, pk, got in zip(state, p, new):
        assert torch.allclose(got, (0.7 * s + 0.3 * pk).clamp(0, 1), atol=1e-14)  # round-off
    assert all(torch.equal(s, torch.ones_like(s)) for s in model.init_state(x))  # all units start firing


def test_box_multiplies_the_pre_activation_by_the_hard_sigmoid_derivative():
    model = binary_model(activation="hard_sigmoid", binary_activations=True, low_pass=0.3, box=True)
    plain = binary_model(activation="hard_sigmoid", binary_activations=True, low_pass=0.3)
    x, _ = data()
    gen = torch.Generator().manual_seed(4)
    # States on [−0.5, 1.5]: about half the units outside the box, where the factor is 0.
    state = tuple(2 * torch.rand(s.shape, generator=gen, dtype=s.dtype) - 0.5 for s in model.init_state(x))
    h = [(s > 0.5).double() for s in state]
    used = model.used_weights()
    w0, w1 = used["layers.0.weight"], used["layers.1.weight"]
    b0, b1 = model.layers[0].bias, model.layers[1].bias
    p = [x @ w0.T + b0 + h[1] @ w1, h[0] @ w1.T + b1]
    box = [((s - 0.5).abs() <= 0.5).double() for s in state]
    assert all(0 < float(b.mean()) < 1 for b in box)  # both cases occur
    with torch.no_grad():
        drive, blocks = model.primitive_grad(state, x), model.layer_drive(state, x, [1], cache={})
    # The authors' update p = ρ'(s)(Ŵh + Ŵᵀh + b), then (1 − γ_n)s + γ_n p before clip01: round-off.
    for s, pk, bk, d in zip(state, p, box, drive):
        assert torch.allclose(d, 0.7 * s + 0.3 * bk * pk, atol=1e-14)
    assert blocks[0] is None and torch.allclose(blocks[1], drive[1], atol=1e-14)
    auto = binary_model(activation="hard_sigmoid", binary_activations=True, low_pass=0.3, box=True, closed_form=False)
    with torch.no_grad():  # autograd through the energy, straight-through ∂h/∂s = ρ'(s): round-off
        assert all(torch.allclose(a, d, atol=1e-14) for a, d in zip(auto.primitive_grad(state, x), drive))
    # Inside [0, 1] the box is 1: the same drive and the same relaxation as without it, exactly.
    inside = tuple(s.clamp(0, 1) for s in state)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model.primitive_grad(inside, x), plain.primitive_grad(inside, x)))
    solver = FixedPoint(tol=None, max_steps=15, on_nonconvergence="ignore")  # truncated, as in training
    ours, theirs = solver.solve(model, x, model.init_state(x))[0], solver.solve(plain, x, plain.init_state(x))[0]
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    y = torch.rand(x.shape[0], 3, dtype=torch.float64)
    for learner in (EP(4.0, "centered", solver=solver), BPTT(solver=solver), ImplicitDifferentiation(solver=solver)):
        assert all(bool(torch.isfinite(g).all()) for g in learner.grads(model, x, y).values())


def test_widened_output_is_the_group_mean_and_learners_run():
    model = binary_model(activation="hard_sigmoid", binary_activations=True, neurons_per_class=4)
    x, y = data()
    state = model.init_state(x)
    assert state[-1].shape == (6, 12) and model.output_layer is None
    out = torch.arange(12.0, dtype=torch.float64).expand(6, 12)
    assert torch.equal(model.output(state[:-1] + (out,)), out.reshape(6, 3, 4).mean(-1))
    solver = FixedPoint(tol=None, max_steps=20)
    for learner in (EP(4.0, "centered", solver=solver), EP(4.0, "random_sign", solver=solver),
                    BPTT(solver=solver), ImplicitDifferentiation(solver=solver)):
        grads = learner.grads(model, x, y)
        assert set(grads) == {n for n, p in model.named_parameters() if p.requires_grad}
        assert all(bool(torch.isfinite(g).all()) for g in grads.values())


def test_holomorphic_ep_refuses_binary_weights():
    model = binary_model()
    x, y = data()
    with pytest.raises(NotHolomorphicError, match="binary weights"):
        HolomorphicEP(0.1, 4, solver=SOLVER).grads(model, x, y)


@pytest.mark.parametrize("kw,match", [
    ({"activation": "sigmoid", "binary_activations": True}, "hard_sigmoid"),
    ({"low_pass": 0.0}, "low_pass"),
    ({"low_pass": 1.5}, "low_pass"),
    ({"neurons_per_class": 0}, "neurons_per_class"),
    ({"box": True}, "binary_activations"),
])
def test_bad_options_are_refused(kw, match):
    with pytest.raises(ConfigurationError, match=match):
        BinaryHopfieldMLP([5, 4, 3], **kw)


@pytest.mark.parametrize("extra", [[], ["optim=metaplastic_adam"], ["model.binary_activations=true", "model.activation=hard_sigmoid",
                                                                    "model.neurons_per_class=4", "learner.beta=4"]],
                         ids=["binary-flip", "metaplastic-adam", "binary-neurons"])
def test_eqprop_train_runs_the_binary_ep_experiment(extra, tmp_path):
    from hydra import compose, initialize_config_dir

    from eqprop.train import run
    from eqprop.train.app import CONFIG_DIR

    overrides = ["experiment=binary_ep", "trainer.max_steps=3", "trainer.batch_size=8", "trainer.progress=false",
                 "trainer.tensorboard=false", "trainer.plot=false", "solver.max_steps=5", "learner.nudged_solver.max_steps=3",
                 "data.limit_test=16", *extra]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    result = run(cfg, run_dir=tmp_path)
    assert result["step"] == 3 and result["stopped"]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["optimizer"]
    groups = state["param_groups"]
    # The latent weights form the binary group; then the scales α, then the biases.
    assert [g["binary"] for g in groups] == [True, False, False] and groups[0]["names"] == ["layers.0.weight", "layers.1.weight"]
    assert groups[1]["names"] == ["alpha.0", "alpha.1"] and groups[1]["scale"]
    if not extra:
        assert all("flips" in s and "momentum" in s for s in state["state"].values() if "momentum" in s)
        assert any("flips" in s for s in state["state"].values())
