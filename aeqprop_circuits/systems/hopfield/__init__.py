"""Dense and convolutional Hopfield-like networks as PhysicalSystems, with their presets' model specs."""

from aeqprop_circuits.systems.hopfield.adjoint import rbp_gradient, tbp_gradient
from aeqprop_circuits.systems.hopfield.interactions import Conv, Dense
from aeqprop_circuits.systems.hopfield.models import build_model, initial_parameters, parse_spec
from aeqprop_circuits.systems.hopfield.network import HopfieldNetwork, HopfieldState

__all__ = ["Conv", "Dense", "HopfieldNetwork", "HopfieldState", "build_model",
           "initial_parameters", "parse_spec", "rbp_gradient", "tbp_gradient"]
