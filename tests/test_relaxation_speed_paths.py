"""The fast relaxation paths: asynchronous sweeps whose blocks compute only their own drives,
in either block order, and 16-bit states (``state_dtype``).

Asynchronous sweeps are checked against a hand-written sweep that takes each block's drive from
autograd of the primitive Φ (float64: equal to round-off). 16-bit relaxations are checked
against the same estimator in float64; their error is set by the 16-bit rounding of the states
(eps = 7.8e-3 for bfloat16, 9.8e-4 for float16) divided by β in EP's contrast, reduced by the
final step in float32 (``full_precision_steps=1``). Speed is measured by benchmarks/relaxation.py.
"""

import copy

import pytest
import torch

from eqprop.baselines import BPTT, ImplicitDifferentiation
from eqprop.check import relative_error
from eqprop.costs import SquaredError
from eqprop.errors import ConfigurationError, ConvergenceError
from eqprop.learners import EP, ContinualEP, ContrastiveLearning, CoupledLearning
from eqprop.models import ConvHopfield, HopfieldMLP
from eqprop.models.base import HopfieldEnergy
from eqprop.solvers import Asynchronous, FixedPoint, GradientDescent, Nudge

ORDERS = {"odd_first": lambda n: [range(1, n, 2), range(0, n, 2)],
          "even_first": lambda n: [range(0, n, 2), range(1, n, 2)]}


def hand_sweep(model, x, state, blocks, nudge=None):
    """One asynchronous sweep written out: each block's drive ∂Φ/∂s_k − β∂C/∂s_k by autograd."""
    state = [s.clone() for s in state]
    for block in blocks:
        leaves = [s.detach().requires_grad_() for s in state]
        with torch.enable_grad():
            drive = torch.autograd.grad(model.primitive(tuple(leaves), x).sum(), leaves)
        for k in block:
            h = drive[k]
            if nudge is not None and k == len(state) - 1:
                h = h - nudge[1] * (state[k] - nudge[0])  # β ∂/∂o ½‖o − y‖²
            state[k] = model.activations[k].rho(h)
    return tuple(state)


def mlp():
    torch.manual_seed(0)
    return HopfieldMLP([12, 10, 8, 4], activation="sigmoid").double(), torch.rand(6, 12, dtype=torch.float64)


def conv():
    torch.manual_seed(0)
    model = ConvHopfield(1, [4, 6], 3, 8, kernel_size=3, padding=1, pooling="max", init_scale=2.0).double()
    return model, torch.rand(5, 1, 8, 8, dtype=torch.float64)


class AutogradMLP(HopfieldEnergy):
    """A user Hopfield energy with Φ only (no layer_drive): the solver's generic path."""

    def __init__(self, inner: HopfieldMLP) -> None:
        super().__init__()
        self.inner = inner
        self.activations = inner.activations

    def primitive(self, state, x):
        return self.inner.primitive(state, x)

    def init_state(self, x):
        return self.inner.init_state(x)

    def output(self, state):
        return state[-1]


@pytest.mark.parametrize("order", list(ORDERS))
@pytest.mark.parametrize("make", [mlp, conv, lambda: (AutogradMLP(mlp()[0]), mlp()[1])], ids=["mlp", "conv", "generic"])
def test_asynchronous_equals_a_hand_written_sweep(make, order):
    model, x = make()
    y = torch.rand(x.shape[0], model.init_state(x)[-1].shape[1], dtype=torch.float64)
    solver = Asynchronous(tol=None, max_steps=1, order=order)
    state = model.init_state(x)
    expected = state
    for _ in range(6):  # six sweeps, each from the previous one's state (the cache must follow the state)
        expected = hand_sweep(model, x, expected, ORDERS[order](len(state)), nudge=(y, 0.3))
    got, _ = Asynchronous(tol=None, max_steps=6, order=order).solve(model, x, state, nudge=Nudge(SquaredError(), y, 0.3))
    # Same arithmetic up to the order of sums: float64 round-off, ≤ 1e-12.
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, rtol=0, atol=1e-12), float((g - e).abs().max())
    assert solver.blocks(3) == tuple(tuple(b) for b in ORDERS[order](3))


def test_the_two_orders_differ_and_explicit_blocks_equal_the_named_order():
    model, x = mlp()
    odd = Asynchronous(tol=None, max_steps=1).solve(model, x, model.init_state(x))[0]
    even = Asynchronous(tol=None, max_steps=1, order="even_first").solve(model, x, model.init_state(x))[0]
    explicit = Asynchronous(tol=None, max_steps=1, order=[[0, 2], [1]]).solve(model, x, model.init_state(x))[0]
    # After one sweep from rest the orders give different states (layer 1 sees s_2 = ρ(0) or its update);
    # explicit blocks are the same code path.
    assert float((odd[0] - even[0]).abs().max()) > 1e-3
    assert all(torch.equal(a, b) for a, b in zip(even, explicit))


@pytest.mark.parametrize("order,words", [("random", "Unknown Asynchronous order"), ([[0], []], "non-empty"),
                                         (3, "list of non-empty blocks")])
def test_bad_orders_are_refused(order, words):
    with pytest.raises(ConfigurationError, match=words):
        Asynchronous(order=order)


def test_an_order_missing_a_layer_is_refused_at_solve():
    model, x = mlp()
    with pytest.raises(ConfigurationError, match="exactly once"):
        Asynchronous(order=[[0], [1]]).solve(model, x, model.init_state(x))


def _ep_error(model, x, y, dtype, beta=0.1, T=60, K=15, solver=FixedPoint, **low_options):
    """Relative error of centered EP with 16-bit states against the same EP in float64."""
    m64 = copy.deepcopy(model).double()
    ref = EP(beta, solver=solver(tol=None, max_steps=T, on_nonconvergence="ignore"),
             nudged_solver=solver(tol=None, max_steps=K, on_nonconvergence="ignore"), cost=SquaredError())
    options = dict(tol=None, state_dtype=dtype, on_nonconvergence="ignore", **low_options)
    low = EP(beta, solver=solver(max_steps=T, **options), nudged_solver=solver(max_steps=K, **options), cost=SquaredError())
    g = low.grads(model, x, y)
    assert all(v.dtype == torch.float32 for v in g.values())  # the contrast is accumulated in float32
    return relative_error({k: v.double() for k, v in g.items()}, ref.grads(m64, x.double(), y.double()))


def digits_like(n, shape, classes=10):
    torch.manual_seed(1)
    x = torch.rand(n, *shape, dtype=torch.float32)
    return x, torch.nn.functional.one_hot(torch.randint(0, classes, (n,)), classes).float()


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 1e-2), (torch.float16, 2e-3), (torch.float32, 1e-4)])
def test_16_bit_centered_ep_on_the_mlp_against_float64(dtype, tol):
    torch.manual_seed(0)
    model = HopfieldMLP([784, 512, 10]).float()  # the tests run with float64 as default dtype
    x, y = digits_like(64, (784,))
    # Measured at β = 0.1, T = 60, K = 15: bfloat16 8.4e-3, float16 7.4e-4, float32 3.0e-5
    # (rounding/β: eps_bf16/0.1 ≈ 8e-2 without the float32 final step, measured 6.9e-2).
    assert _ep_error(model, x, y, dtype) < tol


def test_16_bit_centered_ep_on_the_conv_net_against_float64():
    torch.manual_seed(0)
    x, y = digits_like(16, (1, 12, 12))
    smooth = ConvHopfield(1, [8, 16], 10, 12, kernel_size=3, padding=1, pooling="avg").float()
    # Average pooling (β = 0.1, T = 40, K = 12), measured: bfloat16 1.4e-2, float16 1.3e-3; bound 2×.
    assert _ep_error(smooth, x, y, torch.bfloat16, T=40, K=12) < 3e-2
    assert _ep_error(smooth, x, y, torch.float16, T=40, K=12) < 3e-3
    torch.manual_seed(0)
    model = ConvHopfield(1, [8, 16], 10, 12, kernel_size=3, padding=1, pooling="max").float()
    # Max pooling (the paper's): 16-bit rounding ties the entries of a pooling window, and the
    # relaxation settles on another switch pattern, another equilibrium, whose gradient differs
    # (measured relative error 0.32 bfloat16, 0.16 float16, whatever full_precision_steps) but
    # points the same way: measured cosine 0.949 (bfloat16), 0.988 (float16). Bound: 0.9 / 0.97.
    ref = EP(0.1, solver=FixedPoint(tol=None, max_steps=40), nudged_solver=FixedPoint(tol=None, max_steps=12),
             cost=SquaredError()).grads(copy.deepcopy(model).double(), x.double(), y.double())
    for dtype, bound in ((torch.bfloat16, 0.9), (torch.float16, 0.97)):
        options = dict(tol=None, state_dtype=dtype, on_nonconvergence="ignore")
        g = EP(0.1, solver=FixedPoint(max_steps=40, **options), nudged_solver=FixedPoint(max_steps=12, **options),
               cost=SquaredError()).grads(model, x, y)
        flat, flat_ref = (torch.cat([d[k].double().flatten() for k in ref]) for d in (g, ref))
        assert float(torch.nn.functional.cosine_similarity(flat, flat_ref, dim=0)) > bound


LEARNERS = {
    "ep_centered": lambda s: EP(0.2, solver=s, cost=SquaredError()),
    "ep_positive": lambda s: EP(0.2, "positive", solver=s, cost=SquaredError()),
    "contrastive": lambda s: ContrastiveLearning(solver=s, cost=SquaredError()),
    "coupled": lambda s: CoupledLearning(0.5, solver=s, cost=SquaredError()),
    "continual_ep": lambda s: ContinualEP(0.2, 0.0, steps=20, solver=s, cost=SquaredError()),
    "bptt": lambda s: BPTT(solver=s, cost=SquaredError()),
    "implicit": lambda s: ImplicitDifferentiation(solver=s, cost=SquaredError()),
}


SOLVERS = {"fixed_point": FixedPoint, "asynchronous": Asynchronous,
           "gradient_descent": lambda **kw: GradientDescent(0.5, **kw)}
# continual EP runs the FixedPoint map step by step only (it refuses the other solvers)
PAIRS = [(n, s) for n in LEARNERS for s in SOLVERS if n != "continual_ep" or s == "fixed_point"]


@pytest.mark.parametrize("name,solver_name", PAIRS)
def test_every_static_learner_runs_with_bfloat16_states(name, solver_name):
    solver = SOLVERS[solver_name]
    torch.manual_seed(0)
    model = HopfieldMLP([20, 16, 5], init_scale=2.0).float()
    x, y = digits_like(8, (20,), 5)
    steps = 60 if solver in (FixedPoint, Asynchronous) else 200
    ref = LEARNERS[name](solver(tol=None, max_steps=steps, on_nonconvergence="ignore")).grads(model, x, y)
    low = LEARNERS[name](solver(tol=None, max_steps=steps, state_dtype=torch.bfloat16,
                                on_nonconvergence="ignore")).grads(model, x, y)
    # Against the float32 gradient, measured: ≤ 2.1e-2 for the fixed-point solvers, ≤ 2.9e-2 for
    # gradient descent (whose 16-bit increments η∂E below half a unit of s are lost), 1.6e-1 for
    # BPTT through 200 16-bit gradient-descent steps; bounds 2.5×. A learner whose relaxation lost
    # the nudge, the clamp or the parameters would be off by O(1).
    bound = 0.4 if (name == "bptt" and solver not in (FixedPoint, Asynchronous)) else 7e-2
    assert relative_error(low, ref) < bound
    assert all(p.dtype == torch.float32 and isinstance(p, torch.nn.Parameter) for p in model.parameters())


@pytest.mark.parametrize("dtype", [torch.int32, "int8", torch.complex64, "fp8", 16])
def test_a_non_floating_state_dtype_is_refused(dtype):
    with pytest.raises(ConfigurationError, match="state_dtype must be a real floating dtype"):
        FixedPoint(state_dtype=dtype)


def test_names_of_dtypes_are_accepted():
    assert FixedPoint(state_dtype="bfloat16").state_dtype is torch.bfloat16
    assert Asynchronous(state_dtype="torch.float16").state_dtype is torch.float16


class NoHalfMLP(HopfieldMLP):
    """Stands in for a CPU build without float16 kernels (this build has them)."""

    def layer_drive(self, state, *args, **kwargs):
        if state[0].dtype == torch.float16:
            raise RuntimeError('"addmm_impl_cpu_" not implemented for \'Half\'')
        return super().layer_drive(state, *args, **kwargs)

    def primitive_grad(self, state, *args, **kwargs):
        return self.layer_drive(state, args[0], range(len(state)), *args[1:], **kwargs)


@pytest.mark.parametrize("solver", [FixedPoint, Asynchronous])
def test_float16_without_kernels_is_refused_in_one_sentence(solver):
    model = NoHalfMLP([6, 5, 3]).float()
    x = torch.rand(4, 6, dtype=torch.float32)
    with pytest.raises(ConfigurationError, match="state_dtype=float16 needs NoHalfMLP's operations in float16 on cpu"):
        solver(state_dtype=torch.float16).solve(model, x, model.init_state(x))


def test_a_16_bit_residual_that_stalls_above_tol_reports_the_residual_and_dtype():
    torch.manual_seed(0)
    model = HopfieldMLP([30, 20, 5], activation="sigmoid").float()
    x = torch.rand(8, 30, dtype=torch.float32)
    # The last step runs in float32 (full_precision_steps=1): its change is the distance the
    # bfloat16 relaxation stalled at, ~eps_bf16 = 7.8e-3 × |s|, far above tol.
    solver = FixedPoint(tol=1e-7, max_steps=60, state_dtype=torch.bfloat16, on_nonconvergence="raise")
    with pytest.raises(ConvergenceError, match=r"residual \d\.\d+e-0\d > tol=1\.0e-07 with states in bfloat16"):
        solver.solve(model, x, model.init_state(x))
    # The same relaxation in float32 meets the tolerance: the stall is the dtype's.
    _, status = FixedPoint(tol=1e-7, max_steps=60, on_nonconvergence="raise").solve(model, x, model.init_state(x))
    assert status.converged


def test_bfloat16_relaxation_lands_near_the_float32_fixed_point():
    torch.manual_seed(0)
    model = HopfieldMLP([30, 20, 5], activation="sigmoid").float()
    x = torch.rand(8, 30, dtype=torch.float32)
    s32, _ = FixedPoint(tol=None, max_steps=40).solve(model, x, model.init_state(x))
    s16, _ = FixedPoint(tol=None, max_steps=40, state_dtype=torch.bfloat16).solve(model, x, model.init_state(x))
    assert all(s.dtype == torch.float32 for s in s16)
    # One float32 step after 39 in bfloat16: within a few eps_bf16 (7.8e-3) × the contraction of the map.
    assert max(float((a - b).abs().max()) for a, b in zip(s16, s32)) < 8e-3
