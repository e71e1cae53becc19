"""Echo kernels: the per-call objects that RHEL's echo steps through, closed-form or by autograd.

An echo runs several copies of a Hamiltonian layer at once, stacked along the batch axis, copy
major: rows ``[c·B, (c+1)·B)`` are copy c (copy 0 at +ε, copy 1 at −ε or 0, an optional copy
2 at ε = 0 for the self-check). The contrast RHEL needs is ``Σ_c w_c ∂_θS_c`` with w = (+1, −1,
0, …), S the integrator's generating sum (Pourcel & Ernoult 2025; docs/rhel.md). An integrator
step is a sequence of sub-steps, and each sub-step calls the kernel once:

    kernel.drift(q, p, f)      -> q + f·dt ∂_pT(p)       and adds f·Σ_c w_c ∂_θ(dt T)(p_c)
    kernel.kick(p, q, u, f)    -> p − f·dt ∂_qV(q, u)    and adds f·Σ_c w_c ∂_θ(dt V)(q_c, u),
                                                          and f·Σ_c w_c ∂_u(dt V) into ``input_grad``
    kernel.grads()             -> [(parameter, Σ_j Σ_c w_c ∂_θS_j,c)]   (dt included)

The input u of a step is the same for every copy (batch rows only), so it is never repeated.
A kernel fetches the parameters once per call (detached) and keeps plain tensor accumulators:
no autograd, no module call in the inner loop.

Row layout: a kernel with ``difference = True`` (the closed forms) keeps in rows ``[0, B)`` the
difference copy 0 − copy 1 instead of copy 0, so that the contrast is a state of its own, exact to
the dtype's relative precision whatever ε (float32 included); :func:`echo_rows`,
:func:`row_epsilons`, :func:`copy_rows` and :func:`contrast_rows` read either layout.

One module per kind:

- :mod:`.autograd` — :class:`AutogradEchoKernel` (any Hamiltonian model, one autograd call per
  sub-step) and :class:`AutogradStackKernel` (the encode / mix / decode maps of any stack and
  their vector-Jacobian products): the references the closed forms are checked against;
- :mod:`.hru` — the closed forms of the built-in HRUs (:class:`LinearHRUKernel`,
  :class:`NonlinearHRUKernel`);
- :mod:`.hssm` — :class:`HSSMStackKernel`, the closed form of the HSSM's feedforward maps.

Check: tests/test_echo_kernels.py compares every closed form with its autograd kernel.
These modules take a model by its methods (duck typing) and import no model class, integrator,
cost or learner.
"""

from ._common import contrast_rows, copy_rows, echo_rows, row_epsilons
from .autograd import AutogradEchoKernel, AutogradStackKernel
from .hru import LinearHRUKernel, NonlinearHRUKernel
from .hssm import HSSMStackKernel

__all__ = ["AutogradEchoKernel", "AutogradStackKernel", "LinearHRUKernel", "NonlinearHRUKernel", "HSSMStackKernel",
           "echo_rows", "row_epsilons", "copy_rows", "contrast_rows"]
