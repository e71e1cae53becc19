"""Models: the systems eqprop simulates (energy, Hamiltonian and Lagrangian models)."""

from .activations import ACTIVATIONS, Activation, get_activation
from .base import EnergyModel, HopfieldEnergy, State
from .binarized import BinarizedMLP
from .binary import BinaryConvHopfield, BinaryHopfieldMLP
from .conv_hopfield import ConvHopfield
from .dtp import DTPConvNetwork, DTPModel, DTPNetwork
from .ff_ebm import FFEBM, hopfield_chain
from .hamiltonian import HamiltonianModel
from .hopfield import HopfieldMLP
from .hru import LinearHRU, NonlinearHRU
from .hssm import HSSM
from .lagrangian import LagrangianModel

__all__ = [
    "EnergyModel", "HopfieldEnergy", "HopfieldMLP", "ConvHopfield", "FFEBM", "hopfield_chain",
    "HamiltonianModel", "LinearHRU", "NonlinearHRU", "HSSM", "LagrangianModel",
    "Activation", "ACTIVATIONS", "get_activation", "State",
    "BinaryHopfieldMLP", "BinaryConvHopfield", "BinarizedMLP",
    "DTPModel", "DTPNetwork", "DTPConvNetwork",
]
