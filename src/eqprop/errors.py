"""Exception and warning classes of eqprop.

Every error a user can trigger is one of these, with a message of one sentence that says what
was wrong and how to fix it. They subclass the built-in exception a caller would expect
(``ValueError`` for bad input, ``RuntimeError`` for a failed simulation), so ``except ValueError``
keeps working.
"""

from __future__ import annotations


class EqpropError(Exception):
    """Base class of every eqprop error."""


class ConfigurationError(EqpropError, ValueError):
    """An option that does not exist or a value outside its valid range (e.g. β = 0)."""


class ShapeError(EqpropError, ValueError):
    """An input, target or state whose shape, dtype or batch size does not fit the model."""


class NonFiniteError(EqpropError, ValueError):
    """An input, target, energy or state that contains NaN or infinity."""


class ConvergenceError(EqpropError, RuntimeError):
    """A relaxation or linear solve that did not reach its tolerance (raised when asked to)."""


class NotReversibleError(EqpropError, ValueError):
    """An integrator that is not exactly reversible, used where reversibility is required."""


class NotHolomorphicError(EqpropError, ValueError):
    """A model whose energy is not complex-analytic in the state, used with holomorphic EP."""


class ConvergenceWarning(RuntimeWarning):
    """A relaxation stopped at ``max_steps`` with its residual above ``tol``."""


class PrecisionWarning(RuntimeWarning):
    """A contrast (e.g. an echo nudge ε) so small for the dtype that round-off dominates the estimate."""


class CompileWarning(RuntimeWarning):
    """A solver asked to ``torch.compile`` its step could not, and runs the same step eagerly."""


__all__ = [
    "EqpropError",
    "ConfigurationError",
    "ShapeError",
    "NonFiniteError",
    "ConvergenceError",
    "NotReversibleError",
    "NotHolomorphicError",
    "ConvergenceWarning",
    "PrecisionWarning",
    "CompileWarning",
]
