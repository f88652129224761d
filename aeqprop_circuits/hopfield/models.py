"""Network specifications, weight initialisation and the papers' presets.

Spec grammar (``build_model(spec)``)::

    hopfield:784-2048-10                       dense layers (input size first)
    conv:1x28x28-32c5-64c5-10                  Aeqprop's conv net (5x5, no padding, avg pool 2)
    conv:1x28x28-128c3p1max-256c3p1max-512c3p1max-512c3p1max-10   the EBL study's DCHN
                                               (with input_padding=2: 28x28 padded to 32x32)

The first token is the input: ``N`` (a vector) or ``CxHxW`` (an image, inputs flattened in
C-major order). Every further token is a layer: ``N`` a dense layer of N units, or
``<C>c<k>[p<pad>][avg|max|none]`` a convolutional layer of C channels, kernel k x k, stride 1,
zero padding pad (default 0), then 2x2 pooling (default avg). The last layer must be dense.
``hopfield:`` and ``conv:`` parse the same grammar. A preset name (``aeqprop-dense``,
``aeqprop-conv``, ``ebl-dchn``) is also a valid spec and brings the preset's model options.
"""

from __future__ import annotations

import re

import numpy as np

from aeqprop_circuits.errors import AeqpropError

from .interactions import Conv, Dense
from .network import HopfieldNetwork

_CONV = re.compile(r"^(\d+)c(\d+)(?:p(\d+))?(avg|max|none)?$")

# Hyperparameters from the papers. "epsilon" are Aeqprop's per-group learning rates eps_k
# (Table 2; an Aeqprop step moves theta by -eps_k (beta_2 - beta_1) dL/dtheta, and the paper's
# autodiff baseline uses SGD step size beta eps_k, so the equivalent SGD learning rate of an
# EP estimate is beta * eps_k). "learning_rate" are plain SGD rates (EBL Table 5).
PRESETS: dict[str, dict] = {
    "aeqprop-dense": {
        "source": "Aeqprop (Scellier et al.) Sec. 5.3, Table 2 and App. C, dense network",
        "model": "hopfield:784-2048-10",
        "model_options": {
            "bounds": [(0.0, 1.0), (-1.0, 2.0)],  # Table 2 state space
            "init": "aeqprop", "gains": [0.8, 1.2],  # Table 2 gains, App. C eq. (113)
            "threshold": 1e-3, "adaptive_threshold": True, "gamma": 0.01,  # App. C
            "max_iterations": (100, 100),  # Table 2
            "schedule": "sequential",  # App. C: forward in free phases, backward in nudged
            # C = 1/2 |s_N - y|^2: Sec. 5.3 writes |s_N - y|^2, but with it the pessimistic phase at
            # -beta = -0.5 has a flat output energy and cannot train, while the paper's does; its own
            # derivations use dC/ds = s - y (docs/hopfield.md, "cost convention")
            "cost_scale": 0.5,
            "precision": "float32",
        },
        "data": "fmnist", "input_range": (0.0, 1.0),
        # the authors' code flips half the Fashion-MNIST training images at random (its datasets.py;
        # not in the paper's text); with it the train error is the paper's (docs/hopfield.md,
        # "The authors' code against ours")
        "augment": "hflip",
        "beta": 0.5, "batch_size": 32, "epochs": 200,  # Table 2, Table 1 caption
        "epsilon": {"w1": 0.1, "w2": 0.05, "b1": 0.02, "b2": 0.01},  # Table 2
        # c-ep's SGD rates: beta * eps_k, the step of an Aeqprop-centered update (use c-ep with
        # --beta 0.25 so its nudges are centered Aeqprop's +-beta/2); not in the paper
        "learning_rate": {"w1": 0.05, "w2": 0.025, "b1": 0.01, "b2": 0.005},
        "lr_decay": 0.99,  # Table 2, per epoch
        "controller": "oracle",  # App. C homeostatic control
        "relax_rounds": 1,  # App. C: the clamped phase relaxes the parameters once, in parallel
        "algorithms": ["aeqprop-optimistic", "aeqprop-pessimistic", "aeqprop-centered"],
        "paper_test_error": {"aeqprop-optimistic": 10.53, "aeqprop-pessimistic": 10.73,
                             "aeqprop-centered": 9.28, "autodiff": 10.18},  # Table 1, FashionMNIST
    },
    "aeqprop-conv": {
        "source": "Aeqprop Sec. 5.3, Table 2 and App. C, convolutional network",
        "model": "conv:1x28x28-32c5avg-64c5avg-10",
        "model_options": {
            "bounds": [(0.0, 1.0), (0.0, 1.0), (-1.0, 2.0)],
            "init": "aeqprop", "gains": [0.6, 0.6, 1.5],
            "threshold": 1e-3, "adaptive_threshold": True, "gamma": 0.01,
            "max_iterations": (100, 100), "schedule": "sequential", "cost_scale": 0.5,  # as aeqprop-dense
            "precision": "float32",
        },
        "data": "fmnist", "input_range": (0.0, 1.0), "augment": "hflip",  # as aeqprop-dense
        "beta": 0.2, "batch_size": 16, "epochs": 200,
        "epsilon": {"w1": 0.128, "w2": 0.032, "w3": 0.008, "b1": 0.032, "b2": 0.008, "b3": 0.002},
        "lr_decay": 0.99, "controller": "oracle", "relax_rounds": 1,
        "algorithms": ["aeqprop-optimistic", "aeqprop-pessimistic", "aeqprop-centered"],
        "paper_test_error": {"aeqprop-optimistic": 10.69, "aeqprop-pessimistic": 11.16,
                             "aeqprop-centered": 9.17, "autodiff": 29.55},
    },
    "reference-dense": {
        "source": "issue 6: the settings of the reference PyTorch implementation's timing (dense 784-1024-10, "
                  "c-ep, beta 0.2, batch 16, 15 free and 15 nudged iterations); its learning rate, init and "
                  "state space are not given: Aeqprop Table 2 state space, PyTorch's default Linear init "
                  "U(+-1/sqrt(fan_in)) (= init ebl, gain 1), SGD rate 0.03 from a 1-epoch sweep (docs/hopfield.md)",
        "model": "hopfield:784-1024-10",
        "model_options": {
            "bounds": [(0.0, 1.0), (-1.0, 2.0)], "init": "ebl", "gains": [1.0, 1.0],
            "threshold": 0.0, "max_iterations": (15, 15),  # fixed iteration counts, no convergence test
            "schedule": "sequential", "cost_scale": 1.0, "precision": "float32",
        },
        "data": "fmnist", "input_range": (0.0, 1.0),
        "algorithm": "c-ep", "beta": 0.2, "batch_size": 16, "epochs": 1, "trace_every": 0,
        "learning_rate": 0.03,  # plain SGD, no momentum, no decay
        "paper_test_error": {"c-ep": 15.1},  # the reference's 1-epoch test error (issue 6)
    },
    "ebl-dchn": {
        "source": "EBL comparative study, Sec. 3, App. C-D, Table 5 (comparative-study column)",
        "model": "conv:1x28x28-128c3p1max-256c3p1max-512c3p1max-512c3p1max-10",
        "model_options": {
            "bounds": [(0.0, 1.0)] * 4 + [(-np.inf, np.inf)],  # Sec. 3 state space
            "init": "ebl", "gains": [0.5] * 5,  # Table 5, eq. (104)
            "bias_init": "fan-in",  # the study's code (not in the paper)
            "threshold": 0.0, "max_iterations": (60, 15),  # T and K of Table 5
            "schedule": "alternating",  # App. C asynchronous updates
            # C = 1/2 |o - y|^2: the paper writes |o - y|^2, its code 0.5 * ((output - target) ** 2)
            # (network/cost.py), as the Aeqprop authors' (docs/hopfield.md, "cost convention")
            "cost_scale": 0.5, "precision": "float16",  # App. C.1: 16-bit
            "input_padding": 2,  # App. D: 28x28 padded to 32x32
            "width": 0.25,  # NOT in the paper: CPU-sized channels (128, 256, 512, 512) x width
        },
        "data": "fmnist", "normalize": (0.2860, 0.3530), "augment": "hflip",  # Table 4, App. D
        "beta": 0.25, "batch_size": 128, "epochs": 100,
        "learning_rate": {"w1": 0.0625, "b1": 0.0625, "w2": 0.0375, "b2": 0.0375, "w3": 0.025, "b3": 0.025,
                          "w4": 0.02, "b4": 0.02, "w5": 0.0125, "b5": 0.0125},
        "momentum": 0.9, "weight_decay": 3e-4, "cosine_t_max": 100, "eta_min": 2e-6,
        "tbp_iterations": 15,
        "algorithms": ["cl", "p-ep", "n-ep", "c-ep", "p-cpl", "n-cpl", "c-cpl", "tbp", "rbp"],
        "paper_test_error": {"c-ep": 6.47, "n-ep": 6.22, "tbp": 6.12, "rbp": 6.28, "cl": 10.10,
                             "p-ep": 90.00,
                             "p-cpl": 64.70, "n-cpl": 6.86, "c-cpl": 6.91},  # Table 1, FashionMNIST test
    },
}


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
    """A HopfieldNetwork from a spec string (or a preset name), initialised.

    options: width (hidden-layer multiplier), bounds (one (p, q) per layer; default [0, 1] for
    hidden layers and output_bounds for the output), output_bounds (default (-1, 2), Aeqprop
    Table 2), init ("aeqprop" | "ebl"), bias_init ("zero" | "fan-in"), gains, seed, input_padding, and every keyword of
    HopfieldNetwork (precision, schedule, threshold, max_iterations, cost_scale,
    adaptive_threshold, gamma). A preset's model options are defaults that `options` override.
    """
    if spec in PRESETS:
        preset = PRESETS[spec]
        options = {**preset["model_options"], **options}
        spec = preset["model"]
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


def preset_rates(net: HopfieldNetwork, preset: str) -> np.ndarray:
    """The preset's per-parameter rates as a (P,) array: epsilon (Aeqprop) or learning_rate (EBL)."""
    entry = PRESETS[preset]
    return net.per_parameter(entry.get("epsilon") or entry["learning_rate"])
