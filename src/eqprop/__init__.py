"""eqprop: train physical systems with equilibrium propagation and its family of learning rules.

Four ideas, one subpackage each: ``models`` (what is simulated), ``solvers`` (how it is
simulated), ``learners`` (how a gradient is obtained from simulations alone) and ``baselines``
(the same gradient by autograd); ``check`` proves a learner equal to its baseline.
The core needs only torch, numpy and scipy; ``eqprop.train`` and ``eqprop.data`` live at the edge.
"""

from . import arbitration, baselines, check, costs, errors, estimators, learners, models, reservoir, solvers
from .costs import Cost
from .estimators import EnergyLearner, Estimate, Learner, StepOutput
from .models import EnergyModel, HamiltonianModel, HopfieldEnergy, LagrangianModel
from .solvers import Integrator, Relaxation

__version__ = "0.1.0"

# what a user subclasses: the contract and the base classes of learners, models, solvers and costs
__all__ = [
    "models", "solvers", "arbitration", "reservoir", "costs", "estimators", "learners", "baselines", "check", "errors",
    "Learner", "EnergyLearner", "Estimate", "StepOutput",
    "EnergyModel", "HopfieldEnergy", "HamiltonianModel", "LagrangianModel", "Integrator", "Relaxation", "Cost",
    "__version__",
]
