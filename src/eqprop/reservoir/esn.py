"""EchoStateNetwork: a leaky echo state network with conceptor-controlled states.

Update (Jaeger 2014; Pourcel, Goldmann, Fischer & Soriano 2024, Chaos 34:103127):

    x(k+1) = C(k) [(1 − a) x(k) + a tanh(W x(k) + W_in u(k) + b)]

with W a random matrix scaled to spectral radius ρ, W_in and b random (scales ``input_scale``,
``bias_scale``), leak a and the conceptor C(k) (the identity when none is given). The read-out is
y = W_out x + b_out.

**Loading.** ``load(patterns)`` drives the network with each pattern p_j, collects its states X_j
after a washout and returns the conceptors C_j = R_j(R_j + α⁻²I)⁻¹. It fits, by ridge regression
over all patterns at once, the read-out for one-step prediction, W_out x(k) + b_out ≈ p(k), where
x(k) has seen p(0..k−1). The network then *re-learns its recurrent weights* so that it reproduces
the driven dynamics without input: the input term W_in p(k) is replaced by W_in (W_out x(k) + b_out),

    W* = W + W_in W_out,     b* = b + W_in b_out,

which is exactly the ridge solution of D x(k) + d ≈ W_in p(k) with the same regulariser (for a
ridge problem the solution is linear in the target), i.e. loading by input simulation and
output feedback u(k) = y(k) are one and the same network. After loading, ``step(x)`` without
input runs that autonomous network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

from ..errors import ConfigurationError, NonFiniteError, ShapeError
from .conceptor import apply, check_aperture, conceptor

__all__ = ["EchoStateNetwork", "Loading", "ridge_regression"]


def _positive(name: str, value: Any, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a finite number > 0 ({hint}), got {value!r}.")
    return float(value)


def _nonnegative(name: str, value: Any, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"{name} must be a finite number ≥ 0 ({hint}), got {value!r}.")
    return float(value)


def ridge_regression(features: Tensor, targets: Tensor, ridge: float) -> tuple[Tensor, Tensor]:
    """(W, c) minimising Σ_k ‖W f_k + c − t_k‖² + ridge·L·‖W‖²_F (the bias is not penalised).

    ``features`` [L, N], ``targets`` [L, d]; the penalty scales with L, so ``ridge`` is the
    regulariser of the mean squared error (independent of the number of samples).
    """
    ridge = _nonnegative("ridge", ridge, "the ridge-regression regulariser")
    f_mean, t_mean = features.mean(0), targets.mean(0)
    F, T = features - f_mean, targets - t_mean
    L, N = F.shape
    gram = F.T @ F + ridge * L * torch.eye(N, dtype=F.dtype)
    W = torch.linalg.solve(gram, F.T @ T).T
    return W, t_mean - W @ f_mean


@dataclass
class Loading:
    """What ``EchoStateNetwork.load`` returns: one entry per pattern."""

    conceptors: list[Tensor]          # C_j = R_j(R_j + α⁻²I)⁻¹, [N, N]
    states: list[Tensor]              # driven states X_j after the washout, [L_j, N]
    nrmse: list[float]                # one-step prediction NRMSE of the read-out on each pattern
    final_states: list[Tensor] = field(default_factory=list)  # last driven state: a start for autonomous runs


class EchoStateNetwork:
    """A leaky echo state network of ``size`` neurons (float64 by default; no autograd).

    Args:
        size: number of reservoir neurons N.
        inputs: dimension of the input u (and of the read-out y).
        spectral_radius: ρ > 0; the random W is rescaled so that max |eig(W)| = ρ.
        input_scale: standard deviation of the entries of W_in.
        bias_scale: standard deviation of the entries of b.
        leak: a ∈ (0, 1], the leak rate.
        seed: seed of the random W, W_in and b.
        dtype: floating dtype of the weights and states.
    """

    def __init__(
        self,
        size: int = 200,
        inputs: int = 1,
        spectral_radius: float = 1.6,
        input_scale: float = 1.0,
        bias_scale: float = 1.0,
        leak: float = 0.75,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        for name, value in (("size", size), ("inputs", inputs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be an integer ≥ 1, got {value!r}.")
        rho = _positive("spectral_radius", spectral_radius, "the largest |eigenvalue| of W")
        input_scale = _nonnegative("input_scale", input_scale, "the scale of W_in")
        bias_scale = _nonnegative("bias_scale", bias_scale, "the scale of b")
        if isinstance(leak, bool) or not isinstance(leak, (int, float)) or not 0 < leak <= 1:
            raise ConfigurationError(f"leak must be a number in (0, 1] (a = 1: no leak), got {leak!r}.")
        if not dtype.is_floating_point:
            raise ConfigurationError(f"dtype must be a floating dtype such as torch.float64, got {dtype}.")
        generator = torch.Generator().manual_seed(int(seed))
        W = torch.randn(size, size, generator=generator, dtype=torch.float64) / math.sqrt(size)
        W = W * (rho / torch.linalg.eigvals(W).abs().max().item())
        self.size, self.inputs, self.leak, self.spectral_radius = size, inputs, float(leak), rho
        self.W = W.to(dtype)
        self.W_in = (input_scale * torch.randn(size, inputs, generator=generator, dtype=torch.float64)).to(dtype)
        self.b = (bias_scale * torch.randn(size, generator=generator, dtype=torch.float64)).to(dtype)
        self.W_out = torch.zeros(inputs, size, dtype=dtype)
        self.b_out = torch.zeros(inputs, dtype=dtype)
        self.W_loaded: Tensor | None = None  # W* = W + W_in W_out after load()
        self.b_loaded: Tensor | None = None

    @property
    def dtype(self) -> torch.dtype:
        return self.W.dtype

    # ---------------------------------------------------------------- dynamics
    def step(self, x: Tensor, u: Tensor | None = None, conceptor: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """x(k+1) = C[(1 − a)x + a tanh(W x + W_in u + b)]; u = None runs the loaded network.

        Shapes: x [N] or [B, N]; u [inputs] or [B, inputs]; conceptor [N, N] or [B, N, N];
        mask (1 keeps a neuron, 0 clamps it to zero after the update) [N] or [B, N].
        """
        z = self.candidate(x, u)
        if conceptor is not None:
            z = apply(torch.as_tensor(conceptor, dtype=z.dtype), z)
        if mask is not None:
            z = z * mask
        return z

    def candidate(self, x: Tensor, u: Tensor | None = None) -> Tensor:
        """z = (1 − a)x + a tanh(W x + W_in u + b), the update before the conceptor and the mask."""
        if u is None:
            if self.W_loaded is None:
                raise ConfigurationError("the network runs without input only after load(patterns): load it, or pass u.")
            pre = x @ self.W_loaded.T + self.b_loaded
        else:
            pre = x @ self.W.T + u @ self.W_in.T + self.b
        return (1 - self.leak) * x + self.leak * torch.tanh(pre)

    def output(self, x: Tensor) -> Tensor:
        """y = W_out x + b_out (the read-out; [..., inputs])."""
        return x @ self.W_out.T + self.b_out

    def _inputs(self, u: Tensor) -> Tensor:
        u = torch.as_tensor(u, dtype=self.dtype)
        if u.dim() == 1 and self.inputs == 1:
            u = u[:, None]
        if u.dim() != 2 or u.shape[1] != self.inputs or u.shape[0] < 1:
            raise ShapeError(f"an input sequence must have shape [T, {self.inputs}] (or [T] for one input), got {tuple(u.shape)}.")
        if not torch.isfinite(u).all():
            raise NonFiniteError("the input sequence contains NaN or infinity: clean the pattern before driving the network.")
        return u

    def drive(self, u: Tensor, x0: Tensor | None = None, conceptor: Tensor | None = None) -> Tensor:
        """States [T, N] of the network driven by ``u`` [T, inputs]: row k is x(k+1), which has seen u(0..k)."""
        u = self._inputs(u)
        x = torch.zeros(self.size, dtype=self.dtype) if x0 is None else torch.as_tensor(x0, dtype=self.dtype)
        states = []
        for k in range(u.shape[0]):
            x = self.step(x, u[k], conceptor)
            states.append(x)
        return torch.stack(states)

    def run(self, x0: Tensor, steps: int, conceptor: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """States [steps, (B,) N] of the loaded network run without input under a fixed conceptor (static control)."""
        x, states = torch.as_tensor(x0, dtype=self.dtype), []
        for _ in range(int(steps)):
            x = self.step(x, None, conceptor, mask)
            states.append(x)
        return torch.stack(states)

    # ---------------------------------------------------------------- loading
    def load(self, patterns: Sequence[Tensor], aperture: float, washout: int = 100, ridge: float = 1e-4) -> Loading:
        """Drive with each pattern, compute its conceptor, fit the read-out and re-learn W (module docstring).

        Args:
            patterns: sequences [T_j, inputs] (or [T_j]), T_j > washout + 1.
            aperture: α of the conceptors.
            washout: initial steps dropped from each pattern's states.
            ridge: regulariser of the read-out (of the mean squared error).
        """
        alpha = check_aperture(aperture)
        if isinstance(washout, bool) or not isinstance(washout, int) or washout < 0:
            raise ConfigurationError(f"washout must be an integer ≥ 0, got {washout!r}.")
        if len(patterns) == 0:
            raise ConfigurationError("load needs at least one pattern.")
        features, targets, states, finals = [], [], [], []
        for p in patterns:
            p = self._inputs(p)
            if p.shape[0] <= washout + 1:
                raise ShapeError(f"each pattern must be longer than washout + 1 = {washout + 1} steps, got {p.shape[0]}.")
            X = self.drive(p)                       # X[k] = x(k+1)
            states.append(X[washout:])
            finals.append(X[-1])
            features.append(X[washout:-1])          # x(k+1) predicts p(k+1)
            targets.append(p[washout + 1:])
        W_out, b_out = ridge_regression(torch.cat(features), torch.cat(targets), ridge)
        self.W_out, self.b_out = W_out, b_out
        self.W_loaded = self.W + self.W_in @ W_out
        self.b_loaded = self.b + self.W_in @ b_out
        nrmse = []
        for f, t in zip(features, targets):
            err = (self.output(f) - t).pow(2).mean().sqrt()
            nrmse.append(float(err / t.std().clamp_min(1e-12)))
        return Loading([conceptor(X, alpha) for X in states], states, nrmse, finals)
