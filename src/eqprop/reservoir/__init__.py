"""Reservoirs controlled by conceptors (Jaeger 2014; Pourcel, Goldmann, Fischer & Soriano 2024).

Not an energy-based system: an echo state network whose states are filtered by a conceptor
C = R(R + α⁻²I)⁻¹ (or, in a random feature space, one weight per feature), either fixed
(static control) or adapted on-line by the conceptor control loop.
Needs torch only; see docs/conceptors.md.
"""

from .conceptor import conceptor, conceptor_from_correlation, correlation
from .control import ConceptorControl
from .esn import EchoStateNetwork, Loading, ridge_regression
from .features import FeatureLoading, RandomFeatureConceptor, adapt_weights, feature_conceptor

__all__ = [
    "conceptor", "conceptor_from_correlation", "correlation", "ConceptorControl",
    "EchoStateNetwork", "Loading", "ridge_regression",
    "RandomFeatureConceptor", "FeatureLoading", "feature_conceptor", "adapt_weights",
]
