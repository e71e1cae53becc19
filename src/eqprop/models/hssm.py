"""HSSM: a Hamiltonian state-space model, a stack of HRU layers (Pourcel & Ernoult 2025).

    z¹_k = Enc(x_k)                                    linear encoder
    layer l (HRU, Hamiltonian H_l): Φ^l_{k+1} = M_{z^l_k}(Φ^l_k)
    z^{l+1}_k = Norm(z^l_k + σ(C_l q^l_{k+1}))          readout, nonlinearity, residual, LayerNorm
    o_k = Dec(z^{L+1}_k)                                linear decoder (the cost reads o_k)

Only the HRU layers are Hamiltonian; encoder, readouts, nonlinearity, residual and norm are
per-step feedforward maps. RHEL runs the layers' echoes together in reverse time: at each echo
step the top layer is nudged with the loss gradient, and every layer below is nudged with the
upstream gradient obtained by a vector-Jacobian product through ``mix`` of the input gradient
∂_u that the layer above measured at the step replaying u_k (eqprop.learners.RHEL).

The model implements the stack protocol of :class:`eqprop.models.HamiltonianModel`
(``hamiltonian_layers``, ``encode``, ``mix``, ``decode``, ``init_states``); it has no single
potential. Check: tests/test_rhel.py compares RHEL with BPTT on an HSSM (linear and nonlinear).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigurationError
from ._checks import positive_int
from .echo_kernels import HSSMStackKernel
from .hamiltonian import HamiltonianModel
from .hru import LinearHRU, NonlinearHRU

__all__ = ["HSSM"]

_HRUS = {"linear": LinearHRU, "nonlinear": NonlinearHRU}
_ACTIVATIONS = ("gelu", "glu", "tanh", "identity")


class HSSM(HamiltonianModel):
    """A stack of ``num_layers`` HRUs with linear encoder/decoder and residual, normalised mixing.

    Args:
        input_size: width of x_k. hidden_size: width H of the residual stream z.
        output_size: width of o_k (classes for classification).
        num_layers: number of HRU layers. state_size: width of each HRU's q (default H).
        hru: "linear" (:class:`LinearHRU`) or "nonlinear" (:class:`NonlinearHRU`), or an HRU class.
        activation: "gelu", "glu" (readout to 2H, gated), "tanh" or "identity".
        norm: LayerNorm after the residual sum.
        dt_min: lower end of the range of the initial HRU step sizes.
        dt_max: upper end of that range.
        pooling: "last" (o_k = Dec(z_k)) or "mean" (o_k = running mean of Dec(z_0..k), so the
            final output is the time average, the LinOSS-style readout for classification).
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, num_layers: int = 2,
                 state_size: int | None = None, hru: str | type = "linear", activation: str = "gelu",
                 norm: bool = True, dt_min: float = 0.05, dt_max: float = 0.5, pooling: str = "last") -> None:
        super().__init__()
        if isinstance(hru, str):
            if hru not in _HRUS:
                raise ConfigurationError(f"Unknown HRU {hru!r}; choose 'linear' or 'nonlinear', or pass an HRU class.")
            hru = _HRUS[hru]
        if activation not in _ACTIVATIONS:
            raise ConfigurationError(f"Unknown activation {activation!r}; choose one of {', '.join(_ACTIVATIONS)}.")
        input_size = positive_int("input_size", input_size)
        hidden_size = positive_int("hidden_size", hidden_size)
        output_size = positive_int("output_size", output_size)
        num_layers = positive_int("num_layers", num_layers)
        if state_size is not None:
            state_size = positive_int("state_size", state_size)
        if pooling not in ("last", "mean"):
            raise ConfigurationError(f"Unknown pooling {pooling!r}; choose 'last' or 'mean'.")
        self.pooling = pooling
        state_size = hidden_size if state_size is None else state_size
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = output_size
        self.activation = activation
        self.encoder = nn.Linear(input_size, hidden_size)
        self.layers = nn.ModuleList(
            [hru(hidden_size, state_size, dt_min=dt_min, dt_max=dt_max) for _ in range(num_layers)]
        )
        width = 2 * hidden_size if activation == "glu" else hidden_size
        self.readouts = nn.ModuleList([nn.Linear(state_size, width) for _ in range(num_layers)])
        self.norms = nn.ModuleList([nn.LayerNorm(hidden_size) for _ in range(num_layers)]) if norm else None
        self.decoder = nn.Linear(hidden_size, output_size)

    # -- stack protocol ----------------------------------------------------------------------------
    def hamiltonian_layers(self) -> list[HamiltonianModel]:
        return list(self.layers)

    def encode(self, x_t: Tensor) -> Tensor:
        return self.encoder(x_t)

    def mix(self, index: int, z: Tensor, q: Tensor) -> Tensor:
        y = self.readouts[index](q)
        if self.activation == "gelu":
            y = nn.functional.gelu(y)
        elif self.activation == "glu":
            y = nn.functional.glu(y, dim=-1)
        elif self.activation == "tanh":
            y = torch.tanh(y)
        z = z + y
        if self.norms is None:
            return z
        norm = self.norms[index]  # written out: torch's layer_norm kernel is ~1000× slower on small CPU batches
        centred = z - z.mean(dim=-1, keepdim=True)
        scale = torch.rsqrt((centred * centred).mean(dim=-1, keepdim=True) + norm.eps)
        return centred * scale * norm.weight + norm.bias

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def stack_kernel(self):
        """Closed-form encode / mix / decode VJPs (:class:`~eqprop.models.echo_kernels.HSSMStackKernel`)."""
        cls = type(self)
        if all(getattr(cls, n) is getattr(HSSM, n) for n in ("encode", "mix", "decode")):
            return HSSMStackKernel(self)
        return super().stack_kernel()

    def init_states(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        return [layer.init_state(x) for layer in self.layers]

    # -- a stack has no single Hamiltonian -------------------------------------------------------
    def potential(self, q: Tensor, u: Tensor) -> Tensor:
        raise ConfigurationError("An HSSM has one Hamiltonian per layer; call potential on model.layers[i].")

    def init_state(self, u_seq: Tensor) -> tuple[Tensor, Tensor]:
        raise ConfigurationError("An HSSM has one state per layer; use init_states(x).")

    def output(self, q: Tensor) -> Tensor:
        raise ConfigurationError("An HSSM reads its output through decode(z); use a learner's predict(model, x).")

    def step_size(self, override: float | None = None) -> Tensor:
        raise ConfigurationError("An HSSM has one step size per layer; use model.layers[i].dt.")

    # -- fast inference for linear stacks ------------------------------------------------------------
    def predict_parallel(self, x: Tensor) -> Tensor:
        """Outputs o_k for all k, [batch, T, output_size], by a parallel scan per layer.

        Only for stacks whose layers offer ``trajectory(u_seq)`` — the parallel scan of position
        Verlet with the layer's own dt (:class:`LinearHRU`); equal
        to the sequential simulation (tests/test_hamiltonian_models.py), O(log T) depth.
        """
        if not all(callable(getattr(layer, "trajectory", None)) for layer in self.layers):
            raise ConfigurationError(
                "predict_parallel needs every layer to offer trajectory(u_seq) (a parallel scan, as LinearHRU "
                "does); use a learner's predict."
            )
        z = self.encode(x)
        for index, layer in enumerate(self.layers):
            q_seq, _ = layer.trajectory(z)
            z = self.mix(index, z, q_seq)
        out = self.decode(z)
        if self.pooling == "mean":  # running time average, as the sequential simulation reads it
            counts = torch.arange(1, out.shape[1] + 1, dtype=out.dtype, device=out.device)
            out = out.cumsum(1) / counts.reshape(1, -1, *([1] * (out.dim() - 2)))
        return out
