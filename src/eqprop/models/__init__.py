"""Models: the systems eqprop simulates (energy, Hamiltonian and Lagrangian models)."""

from .activations import ACTIVATIONS, Activation, get_activation
from .base import EnergyModel, HopfieldEnergy, State
from .hopfield import HopfieldMLP
from .hamiltonian import HamiltonianModel
from .hru import LinearHRU, NonlinearHRU
from .hssm import HSSM

__all__ = ["EnergyModel", "HopfieldEnergy", "HopfieldMLP", "Activation", "ACTIVATIONS", "get_activation", "State"]
__all__ += ['HamiltonianModel', 'LinearHRU', 'NonlinearHRU', 'HSSM']

from .ff_ebm import FFEBM, hopfield_chain

__all__ += ["FFEBM", "hopfield_chain"]
from .conv_hopfield import ConvHopfield

__all__ += ["ConvHopfield"]

from .lagrangian import LagrangianModel

__all__ += ["LagrangianModel"]
