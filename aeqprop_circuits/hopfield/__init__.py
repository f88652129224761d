"""Dense and convolutional Hopfield-like networks as PhysicalSystems, their backprop baselines and presets.

Importing this package registers the `tbp` and `rbp` algorithms with the learning module.
"""

from .baselines import RBP, TBP, rbp_gradient, tbp_gradient
from .interactions import Conv, Dense
from .models import PRESETS, build_model, initial_parameters, parse_spec, preset_rates
from .network import HopfieldNetwork, HopfieldState

__all__ = ["PRESETS", "Conv", "Dense", "HopfieldNetwork", "HopfieldState", "RBP", "TBP", "build_model",
           "initial_parameters", "parse_spec", "preset_rates", "rbp_gradient", "tbp_gradient"]
