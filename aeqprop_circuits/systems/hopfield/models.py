"""Network specifications and weight initialisation (the papers' presets are in experiments/presets.py).

Spec grammar (``build_model(spec)``)::

    hopfield:784-2048-10                       dense layers (input size first)
    conv:1x28x28-32c5-64c5-10                  Aeqprop's conv net (5x5, no padding, avg pool 2)
    conv:1x28x28-128c3p1max-256c3p1max-512c3p1max-512c3p1max-10   the EBL study's DCHN
                                               (with input_padding=2: 28x28 padded to 32x32)

The first token is the input: ``N`` (a vector) or ``CxHxW`` (an image, inputs flattened in
C-major order). Every further token is a layer: ``N`` a dense layer of N units, or
``<C>c<k>[p<pad>][avg|max|none]`` a convolutional layer of C channels, kernel k x k, stride 1,
zero padding pad (default 0), then 2x2 pooling (default avg). The last layer must be dense.
``hopfield:`` and ``conv:`` parse the same grammar.
"""

from __future__ import annotations

import re

import numpy as np

from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.systems.hopfield.interactions import Conv, Dense
from aeqprop_circuits.systems.hopfield.network import HopfieldNetwork

_CONV = re.compile(r"^(\d+)c(\d+)(?:p(\d+))?(avg|max|none)?$")



def parse_spec(spec: str, width: float = 1.0, input_padding: int = 0):
    """(input_shape, interactions) for a spec string; see the module docstring."""
    kind, _, body = spec.partition(":")
    if kind not in ("hopfield", "conv") or not body:
        raise AeqpropError(f"model spec '{spec}': expected 'hopfield:784-2048-10' or "
                           "'conv:1x28x28-32c5-64c5-10'")
    tokens = body.split("-")
    if len(tokens) < 2:
        raise AeqpropError(f"model spec '{spec}': expected an input and at least one layer")
    try:
        input_shape = tuple(int(v) for v in tokens[0].split("x"))
    except ValueError:
        raise AeqpropError(f"model spec '{spec}': input '{tokens[0]}' is not N or CxHxW") from None
    if len(input_shape) not in (1, 3):
        raise AeqpropError(f"model spec '{spec}': input '{tokens[0]}' is not N or CxHxW")
    if len(input_shape) == 3:
        c, h, w = input_shape
        shape: tuple = (h + 2 * input_padding, w + 2 * input_padding, c)
    else:
        shape = input_shape
    interactions = []
    last = len(tokens) - 1
    for i, token in enumerate(tokens[1:], start=1):
        scale = 1.0 if i == last else width
        match = _CONV.match(token)
        if match:
            if len(shape) != 3:
                raise AeqpropError(f"model spec '{spec}': conv layer '{token}' after a dense layer")
            channels = max(1, int(round(int(match.group(1)) * scale)))
            kernel, pad = int(match.group(2)), int(match.group(3) or 0)
            try:
                inter = Conv(shape, channels, kernel, pad, pool=match.group(4) or "avg")
            except ValueError as err:
                raise AeqpropError(f"model spec '{spec}': layer '{token}': {err}") from None
        elif token.isdigit():
            inter = Dense(shape, max(1, int(round(int(token) * scale))))
        else:
            raise AeqpropError(f"model spec '{spec}': layer '{token}' is neither N nor "
                               "<C>c<k>[p<pad>][avg|max|none]")
        interactions.append(inter)
        shape = inter.post_shape
    if len(interactions[-1].post_shape) != 1:
        raise AeqpropError(f"model spec '{spec}': the last layer must be dense")
    return input_shape, interactions


def initial_parameters(net: HopfieldNetwork, init: str = "aeqprop", gains=None, seed: int = 0,
                       bias_init: str = "zero") -> np.ndarray:
    """theta_0. "aeqprop": App. C eq. (113)-(114), half Xavier-uniform (dense) and half Kaiming-normal
    (conv, c taken as the std); "ebl": eq. (104), U(-c, c) with c = gain / sqrt(fan_in).

    Neither paper states how biases start. bias_init "zero" (the Aeqprop authors' code) or
    "fan-in", U(-c, c) with c = gain / sqrt(fan_in) (the EBL study's code, network/variable/
    parameter.py, and PyTorch's Linear default)."""
    if bias_init not in ("zero", "fan-in"):
        raise AeqpropError(f"unknown bias_init '{bias_init}'; expected 'zero' or 'fan-in'")
    rng = np.random.default_rng(seed)
    gains = [1.0] * net.n_layers if gains is None else list(gains)
    if len(gains) != net.n_layers:
        raise AeqpropError(f"{len(gains)} gains for {net.n_layers} interactions")
    theta = np.zeros(net.n_parameters)
    for k, (inter, gain) in enumerate(zip(net.interactions, gains)):
        sl = net.groups[2 * k][1]
        size = sl.stop - sl.start
        if init == "aeqprop":
            if isinstance(inter, Dense):
                c = gain / 2 * np.sqrt(6.0 / (inter.fan_in + inter.fan_out))
                theta[sl] = rng.uniform(-c, c, size)
            else:
                theta[sl] = rng.normal(0.0, gain / 2 * np.sqrt(1.0 / inter.fan_in), size)
        elif init == "ebl":
            c = gain * np.sqrt(1.0 / inter.fan_in)
            theta[sl] = rng.uniform(-c, c, size)
        else:
            raise AeqpropError(f"unknown init '{init}'; expected 'aeqprop' or 'ebl'")
        if bias_init == "fan-in":
            bias = net.groups[2 * k + 1][1]
            c = gain / np.sqrt(inter.fan_in)
            theta[bias] = rng.uniform(-c, c, bias.stop - bias.start)
    return theta


def build_model(spec: str, **options) -> HopfieldNetwork:
    """A HopfieldNetwork from a spec string, initialised.

    options: width (hidden-layer multiplier), bounds (one (p, q) per layer; default [0, 1] for
    hidden layers and output_bounds for the output), output_bounds (default (-1, 2), Aeqprop
    Table 2), init ("aeqprop" | "ebl"), bias_init ("zero" | "fan-in"), gains, seed, input_padding, and every keyword of
    HopfieldNetwork (precision, schedule, threshold, max_iterations, cost_scale,
    adaptive_threshold, gamma).
    """
    width = float(options.pop("width", 1.0))
    init = options.pop("init", "aeqprop")
    bias_init = options.pop("bias_init", "zero")
    gains = options.pop("gains", None)
    seed = int(options.pop("seed", 0))
    output_bounds = options.pop("output_bounds", (-1.0, 2.0))
    bounds = options.pop("bounds", None)
    input_padding = int(options.get("input_padding", 0))
    input_shape, interactions = parse_spec(spec, width, input_padding)
    if bounds is None:
        bounds = [(0.0, 1.0)] * (len(interactions) - 1) + [tuple(output_bounds)]
    unknown = set(options) - {"precision", "schedule", "threshold", "max_iterations", "cost_scale",
                              "adaptive_threshold", "gamma", "input_padding"}
    if unknown:
        raise AeqpropError(f"unknown Hopfield model options {sorted(unknown)}")
    net = HopfieldNetwork(input_shape, interactions, bounds, **options)
    net.parameters = initial_parameters(net, init, gains, seed, bias_init)
    return net
