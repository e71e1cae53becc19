"""Chained EP on feedforward-tied EBMs against autograd, float64 (Nest & Ernoult 2024).

Theory (Nest & Ernoult 2024; docs/theory.md, "Chained EP"): each block's centered estimate of (g_θ, δx) has bias O(β²);
the bias of δx enters the nudge of the block below linearly (and the nudge is ±β⟨δ, o⟩, so its
own centered estimate adds O(β²) again), hence the whole chain is O(β²) with a constant that
grows with depth: measured K ≈ 0.04–2 on these chains. The two autograd baselines (implicit
differentiation per block; BPTT through every relaxation) differentiate the same converged
equilibria (residual ≤ 1e-14) and agree to round-off amplified by the conditioning of each
block's (I − J) (≤ 1e3 here), i.e. ≤ 1e-9.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eqprop.baselines import ChainedBackprop, ImplicitDifferentiation
from eqprop.check import relative_error
from eqprop.check.sweep import Sweep
from eqprop.costs import CrossEntropy
from eqprop.errors import ConfigurationError, ShapeError
from eqprop.learners import EP, ChainedEP
from eqprop.models import FFEBM, EnergyModel, HopfieldMLP, hopfield_chain
from eqprop.solvers import FixedPoint, GradientDescent

BETAS = [1e-2, 3e-3, 1e-3]
FIXED = FixedPoint(tol=1e-14, max_steps=3000)


class ReadoutEnergy(EnergyModel):
    """A user's block relaxed by gradient descent, with a trainable read-out: o = R tanh(h).

    E = ½|h|² + ¼ Σ h⁴ − tanh(h)·(A x + a); the read-out R makes ``output`` depend on θ.
    """

    def __init__(self, n_in: int, n_hidden: int, n_out: int) -> None:
        super().__init__()
        self.A, self.R, self.n_hidden = nn.Linear(n_in, n_hidden), nn.Linear(n_hidden, n_out), n_hidden

    def energy(self, state, x):
        (h,) = state
        return 0.5 * (h * h).sum(1) + 0.25 * (h**4).sum(1) - (torch.tanh(h) * self.A(x)).sum(1)

    def init_state(self, x):
        return (x.new_zeros(x.shape[0], self.n_hidden),)

    def output(self, state):
        return self.R(torch.tanh(state[0]))


def two_blocks():
    return FFEBM([(nn.Linear(5, 6), HopfieldMLP([6, 5, 4], "sigmoid")),
                  (nn.Sequential(nn.Linear(4, 5), nn.Tanh()), HopfieldMLP([5, 4, 3], "tanh"))])


def three_blocks():
    return FFEBM([(nn.Linear(5, 6), HopfieldMLP([6, 5, 4], "sigmoid", init_scale=1.5)),
                  (nn.Sequential(nn.Linear(4, 5), nn.Tanh()), HopfieldMLP([5, 4, 4], "tanh", init_scale=1.5)),
                  (nn.Linear(4, 4), HopfieldMLP([4, 3], "sigmoid", init_scale=1.5))])


def user_block_chain():
    return FFEBM([(nn.Identity(), ReadoutEnergy(5, 6, 4)),
                  (nn.Sequential(nn.Linear(4, 5), nn.Tanh()), HopfieldMLP([5, 4, 3], "sigmoid"))])


GD = GradientDescent(step_size=0.3, tol=1e-13, max_steps=20000)
CHAINS = {
    "two-blocks": (two_blocks, FIXED, None),
    "three-blocks": (three_blocks, FIXED, None),
    "user-block-gd-crossentropy": (user_block_chain, [GD, FIXED], CrossEntropy()),
}


def data(classes: bool = False, n_in: int = 5, n_out: int = 3, batch: int = 6):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, n_in, generator=g, dtype=torch.float64)
    y = torch.randint(0, n_out, (batch,), generator=g) if classes else torch.rand(batch, n_out, generator=g, dtype=torch.float64)
    return x, y


@pytest.fixture(params=list(CHAINS), scope="module")
def chain(request):
    make, solver, cost = CHAINS[request.param]
    torch.manual_seed(0)
    model = make().double()
    x, y = data(classes=cost is not None)
    reference = ChainedBackprop(solver=solver, cost=cost).grads(model, x, y)
    return model, x, y, solver, cost, reference


def test_implicit_equals_bptt(chain):
    model, x, y, solver, cost, reference = chain
    bptt = ChainedBackprop(solver=solver, cost=cost, method="bptt").grads(model, x, y)
    # Same converged equilibria, two differentiations: round-off × conditioning (≤ 1e3) → 1e-9.
    assert relative_error(bptt, reference) < 1e-9
    assert set(bptt) == set(reference) == {n for n, _ in model.named_parameters()}


def test_chained_ep_error_is_second_order(chain):
    model, x, y, solver, cost, reference = chain
    errors = [relative_error(ChainedEP(b, solver=solver, cost=cost).grads(model, x, y), reference) for b in BETAS]
    sweep = Sweep(BETAS, errors, "ChainedEP")
    # Centered nudges: the log-log slope of the error in β is 2; higher orders shift it by O(β)
    # over this range: ±0.1.
    assert abs(sweep.order - 2.0) < 0.1, str(sweep)
    # Size: error ≤ 10·β² (K ≤ 10; measured K ≈ 0.04–2 on these chains).
    assert errors[-1] < 10 * BETAS[-1] ** 2, str(sweep)
    # Every parameter, feedforward (ω) and energy (θ), is estimated, not only the total.
    grads = ChainedEP(BETAS[-1], solver=solver, cost=cost).grads(model, x, y)
    worst = max(relative_error(grads[n], reference[n]) for n in reference if reference[n].abs().max() > 1e-8)
    assert worst < 1e-3, worst


def test_one_block_chain_is_centered_ep():
    torch.manual_seed(0)
    block = HopfieldMLP([5, 4, 3], "sigmoid").double()
    model = FFEBM([(nn.Identity(), block)])
    x, y = data()
    fixed = FixedPoint(tol=None, max_steps=300)  # the same steps in every phase of both learners
    chained = ChainedEP(0.05, solver=fixed).grads(model, x, y)
    ep = EP(0.05, "centered", solver=fixed).grads(block, x, y)
    # The same relaxations and the same contrast (autograd vs closed-form ∂_θE): round-off only,
    # 1e-16 divided by 2β → 1e-14.
    assert relative_error({f"blocks.0.{k}": v for k, v in ep.items()}, chained) < 1e-12
    implicit = ChainedBackprop(solver=FIXED).grads(model, x, y)
    single = ImplicitDifferentiation(solver=FIXED).grads(block, x, y)
    # Same linear system, same Neumann series: round-off.
    assert relative_error({f"blocks.0.{k}": v for k, v in single.items()}, implicit) < 1e-10


def test_step_writes_grad_and_grads_has_no_side_effects():
    torch.manual_seed(0)
    model = two_blocks().double()
    x, y = data()
    learner = ChainedEP(0.01, solver=FIXED)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = learner.grads(model, x, y)
    assert all(torch.equal(p, before[n]) and p.grad is None for n, p in model.named_parameters())
    out = learner.step(model, x, y)
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, grads[n])  # deterministic: the same numbers
    assert learner.predict(model, x).shape == (6, 3)
    assert torch.allclose(out.prediction, learner.predict(model, x))


def test_hopfield_chain_builder():
    model = hopfield_chain([[64, 16, 8], [12, 10]], activation="sigmoid", output_activation="identity")
    assert isinstance(model.feedforward[0], nn.Identity) and model.feedforward[1].in_features == 8
    assert model.blocks[1].activations[-1].name == "identity"
    x = torch.rand(3, 64, dtype=torch.float32)
    assert ChainedEP(0.1).predict(model.float(), x).shape == (3, 10)


def test_errors():
    torch.manual_seed(0)
    x, y = data()
    with pytest.raises(ConfigurationError, match="beta"):
        ChainedEP(0.0)
    with pytest.raises(ConfigurationError, match="pair"):
        FFEBM([nn.Linear(2, 2)])
    with pytest.raises(ConfigurationError, match="EnergyModel"):
        FFEBM([(nn.Identity(), nn.Linear(2, 2))])
    with pytest.raises(ConfigurationError, match="FFEBM"):
        ChainedEP(0.1).grads(HopfieldMLP([5, 3]).double(), x, y)
    model = two_blocks().double()
    with pytest.raises(ConfigurationError, match="2 blocks"):
        ChainedEP(0.1, solver=[FIXED] * 3).grads(model, x, y)
    with pytest.raises(ShapeError, match="target"):
        ChainedEP(0.1, solver=FIXED).grads(model, x, torch.rand(6, 4))
    # Mismatched blocks: block 0 outputs 4 units, the map of block 1 reads 7.
    bad = FFEBM([(nn.Linear(5, 6), HopfieldMLP([6, 4])), (nn.Linear(7, 5), HopfieldMLP([5, 3]))]).double()
    with pytest.raises(ShapeError, match="block 1"):
        ChainedEP(0.1).grads(bad, x, y)
    # Mismatched map and block: F_0 gives 6 features, the block expects 5.
    bad = FFEBM([(nn.Linear(5, 6), HopfieldMLP([5, 3]))]).double()
    with pytest.raises(ShapeError, match="5 features"):
        ChainedBackprop().grads(bad, x, y)
    with pytest.raises(ConfigurationError, match="method"):
        ChainedBackprop(method="adjoint")


def test_positive_variant_is_first_order(chain):
    model, x, y, solver, cost, reference = chain
    errors = [relative_error(ChainedEP(b, solver=solver, cost=cost, variant="positive").grads(model, x, y), reference)
              for b in BETAS]
    # One-sided nudges: each block's estimate is O(β), and its δ carries that bias into the block
    # below: slope 1 ± 0.1, and at β = 1e-3 at least 10× the centered error (measured 30–100×).
    sweep = Sweep(BETAS, errors, "ChainedEP positive")
    assert abs(sweep.order - 1.0) < 0.1, str(sweep)
    centered = relative_error(ChainedEP(BETAS[-1], solver=solver, cost=cost).grads(model, x, y), reference)
    assert errors[-1] > 10 * centered
