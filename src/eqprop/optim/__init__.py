"""Optimizers of the hardware-minded learning rules: binary weight flips and metaplasticity.

Both are ``torch.optim.Optimizer`` subclasses: they read ``p.grad`` (dL/dθ, as every eqprop
learner and baseline writes it) and work with any learner. :func:`param_groups` splits a
model's parameters into its binary latent weights and the rest, so that one optimizer treats
each kind as its paper says.
"""

from .binary_flip import BinaryFlip
from .groups import param_groups
from .metaplastic import MetaplasticAdam

__all__ = ["BinaryFlip", "MetaplasticAdam", "param_groups"]
