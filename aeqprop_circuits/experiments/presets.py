"""Named hyperparameters (`aeqprop train --preset NAME`), each with its source next to it.

A preset is data: the config keys it sets (model, model_options, data, algorithm, beta, lr or
epsilon, ...) and a "source" naming the paper and table (or the tuning) its values come from.
Rates given per parameter group ({"w1": ..., "b": ...}) are resolved by the system.

Deep resistive networks
-----------------------
Hyperparameters of deep-resistive-network runs: `aeqprop train --preset drn-xs` (docs/results/drn.md).

Sources. "paper" = Scellier 2024, "A fast algorithm to simulate nonlinear resistive networks"
(ICML), as run by its code: github.com/rain-neuromorphics/energy-based-learning,
papers/fast-drn/drn.py (architectures, batch size 4, 4 block iterations per phase for
DRN-XS/-1H and 5 for DRN-2H, in inference and training, centered EP, SGD without momentum,
learning-rate decay 0.99 per epoch, conductances clipped at 0, 10 epochs for XS and 50 for
1H/2H). "tuned here" = chosen on Fashion-MNIST for this package's physics, which is the
builder's circuit (hidden nodes clipped to [0, 1] V by two diodes, bias resistors to +-1 V,
differential outputs, normalised units theta = g / g0), not the paper's code (one-sided
excitatory / inhibitory units, bias currents, single-node outputs, input gain 100-480 on
[0, 1] pixels). So beta, the learning rate and the input gain do not transfer as numbers:
the paper's beta = 1 is ~0.4 of an output node's conductance there, but here
beta = 0.5 already makes the negatively nudged phase nearly non-convex (EP estimate at
cosine 0.02 with the true gradient; at beta = 0.05-0.1 the cosine is 0.9998).

Input gain, per-block learning rates and target amplitude were chosen on a validation split
(training images 50 000-59 999; such scans are the sweeps netlists/sweeps/drn-xs-validation.json
and drn-1h-validation.json on `fmnist:validation`): with the input sources at +-100 x the
hidden pre-activations span the diode window, and the input block, whose measured voltage
drops are ~gain x, takes a rate ~1/gain^2 of the others.
"""

from __future__ import annotations

import numpy as np

from aeqprop_circuits.systems.models import load_system

_PAPER_CODE = "Scellier 2024, energy-based-learning papers/fast-drn/drn.py"
_UNIVERSAL_CODE = "Scellier 2024 (arXiv 2312.15063), energy-based-learning papers/universal-drn/drn-vs-relu-nn.py"

DRN_PRESETS: dict[str, dict] = {
    "drn-xs": {
        "source": f"{_PAPER_CODE} (DRN-XS) + tuned here (beta, lr, input_gain, amplitude)",
        "model": "drn:1568-100-10",  # paper: layer shapes [(2, 28, 28), (100,), (10,)]
        "model_options": {
            "iterations": 4,  # paper: num_iterations_inference = num_iterations_training = 4
            "dtype": "float32",  # paper: float32 tensors
            "input_gain": 100.0,  # tuned here (paper: input_gain 100, in its own units)
        },
        "data": "fmnist",
        "algorithm": "c-ep",  # paper: estimator.variant = 'centered'
        "batch_size": 4,  # paper: batch_size = 4
        "epochs": 10,  # paper: num_epochs = 10 for DRN-XS
        "beta": 0.1,  # tuned here (paper: nudging = 1.0 in its units; see the module docstring)
        "lr": {"w1": 3e-5, "w2": 0.03, "b": 0.03},  # tuned here (paper: 0.006 for all, its units)
        # Aeqprop: epsilon = lr / beta, the c-ep rates. With the oracle controller and one parameter relaxation
        # the step is then exactly c-ep's at +-beta/2 (`aeqprop train` runs it in place;
        # docs/explanation/learning-rules.md).
        # On the generic operator loop (--relax-rounds > 1, --controller proportional) this epsilon collapses
        # the input block (docs/results/drn.md); use epsilon {"w1": 3e-7, "w2": 0.03, "b": 0.03} there.
        "epsilon": {"w1": 3e-4, "w2": 0.3, "b": 0.3},
        "relax_rounds": 1,  # Aeqprop: App. C's single parallel parameter relaxation
        "lr_decay": 0.99,  # paper: ExponentialLR(gamma=0.99) per epoch
        "target_amplitude": 0.5,  # tuned here (one-hot targets as the paper's SquaredError, amplitude 0.5 V)
        "trace_every": 0,  # no Lyapunov trace: it costs two extra settles per step
    },
    "drn-1h": {
        "source": f"{_PAPER_CODE} (DRN-1H) + tuned here (beta, lr, input_gain, amplitude)",
        "model": "drn:1568-1024-10",  # paper: [(2, 28, 28), (1024,), (10,)]
        "model_options": {"iterations": 4, "dtype": "float32", "input_gain": 100.0},  # as drn-xs
        "data": "fmnist",
        "algorithm": "c-ep",
        "batch_size": 4,
        "epochs": 50,  # paper: num_epochs = 50
        "beta": 0.1,
        "lr": {"w1": 3e-5, "w2": 0.01, "b": 0.01},  # tuned here (fan-in 1024 into the outputs: w2 below drn-xs)
        "epsilon": {"w1": 3e-4, "w2": 0.1, "b": 0.1},  # Aeqprop: lr / beta, as drn-xs
        "relax_rounds": 1,
        "lr_decay": 0.99,
        "target_amplitude": 0.5,
        "trace_every": 0,
    },
    "drn-1h-universal": {
        "source": f"{_UNIVERSAL_CODE}: its Fashion-MNIST DRN-1H recipe, on its own circuit (drn/signed.py)",
        "model": "drn:1568-1024-10",
        "model_options": {
            "circuit": "signed",  # excitatory/inhibitory hidden units, bias current sources, single outputs
            "input_gain": 300.0,  # paper: dataset gain 5 x model gain 60
            "iterations": 4, "dtype": "float32",  # paper: 4 block iterations per phase, float32
            "warm_start": True,  # from the previous step's free state; the paper code's from its +beta phase ("last")
        },
        "data": "fmnist",
        "augment": "hflip",  # paper code: RandomHorizontalFlip on Fashion-MNIST training images
        "algorithm": "c-ep",  # paper: centered EP
        "beta": 0.5,  # paper: nudging 0.5
        "lr": 0.005,  # paper: SGD at 0.005 for every block
        "momentum": 0.9,  # paper: SGD momentum 0.9
        "batch_size": 32,  # paper: batch 32
        "epochs": 100,  # paper: 100 epochs
        "lr_decay": 0.99,  # paper: ExponentialLR(0.99) per epoch
        "target_amplitude": 1.0,  # one-hot targets
        "trace_every": 0,
        "paper_test_error": {"c-ep": 10.38},  # the script's expected result (train error 6.14 %)
    },
    "drn-xl": {
        "source": f"{_PAPER_CODE} (DRN-XL: architecture, batch, iterations, lr, no momentum) on the circuit and "
                  f"Fashion-MNIST recipe of {_UNIVERSAL_CODE} (beta, augmentation, targets), input gain scaled",
        "model": "drn:1568-32768-10",  # paper: [(2, 28, 28), (32768,), (10,)], 51.7 M conductances
        "model_options": {
            "circuit": "signed",  # as drn-1h-universal
            "input_gain": 500.0,  # universal-DRN Fashion-MNIST gain 300 x (DRN-XL 800 / DRN-1H 480 in fast-drn)
            "iterations": 4, "dtype": "float32",  # paper: 4 block iterations per phase (inference and training)
            "warm_start": True,
        },
        "data": "fmnist",
        "augment": "hflip",  # universal-DRN code on Fashion-MNIST
        "algorithm": "c-ep",  # paper: centered EP
        "beta": 0.5,  # universal-DRN Fashion-MNIST nudging
        "lr": 0.006,  # paper (DRN-XL): SGD at 0.006 for every block, batch 4, no momentum
        "batch_size": 4,  # paper: batch_size = 4
        "epochs": 100,  # paper: num_epochs = 100 for DRN-XL
        "lr_decay": 0.99,  # paper: ExponentialLR(0.99) per epoch
        "target_amplitude": 1.0,  # one-hot targets
        "trace_every": 0,
    },
    "drn-2h": {
        "source": f"{_PAPER_CODE} (DRN-2H); beta, lr, input_gain, amplitude as drn-1h (not tuned for 2 hidden layers)",
        "model": "drn:1568-1024-1024-10",  # paper: [(2, 28, 28), (1024,), (1024,), (10,)]
        "model_options": {"iterations": 5, "dtype": "float32", "input_gain": 100.0},  # paper: 5 iterations per phase
        "data": "fmnist",
        "algorithm": "c-ep",
        "batch_size": 4,
        "epochs": 50,
        "beta": 0.1,
        "lr": {"w1": 3e-5, "w2": 0.01, "w3": 0.01, "b": 0.01},
        "epsilon": {"w1": 3e-4, "w2": 0.1, "w3": 0.1, "b": 0.1},  # Aeqprop: lr / beta, as drn-xs
        "relax_rounds": 1,
        "lr_decay": 0.99,
        "target_amplitude": 0.5,
        "trace_every": 0,
    },
}


# Hyperparameters from the papers. "epsilon" are Aeqprop's per-group learning rates eps_k
# (Table 2; an Aeqprop step moves theta by -eps_k (beta_2 - beta_1) dL/dtheta, and the paper's
# autodiff baseline uses SGD step size beta eps_k, so the equivalent SGD learning rate of an
# EP estimate is beta * eps_k). "lr" are plain SGD rates (EBL Table 5).
HOPFIELD_PRESETS: dict[str, dict] = {
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
            # derivations use dC/ds = s - y (docs/results/ebl-study.md, "The cost convention decides n-ep")
            "cost_scale": 0.5,
            "precision": "float32",
        },
        "data": "fmnist",
        # the authors' code flips half the Fashion-MNIST training images at random (its datasets.py;
        # not in the paper's text); with it the train error is the paper's (docs/results/aeqprop.md)
        "augment": "hflip",
        "beta": 0.5, "batch_size": 32, "epochs": 200,  # Table 2, Table 1 caption
        "epsilon": {"w1": 0.1, "w2": 0.05, "b1": 0.02, "b2": 0.01},  # Table 2
        # c-ep's SGD rates: beta * eps_k, the step of an Aeqprop-centered update (use c-ep with
        # --beta 0.25 so its nudges are centered Aeqprop's +-beta/2); not in the paper
        "lr": {"w1": 0.05, "w2": 0.025, "b1": 0.01, "b2": 0.005},
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
        "data": "fmnist", "augment": "hflip",  # as aeqprop-dense
        "beta": 0.2, "batch_size": 16, "epochs": 200,
        "epsilon": {"w1": 0.128, "w2": 0.032, "w3": 0.008, "b1": 0.032, "b2": 0.008, "b3": 0.002},
        "lr_decay": 0.99, "controller": "oracle", "relax_rounds": 1,
        "algorithms": ["aeqprop-optimistic", "aeqprop-pessimistic", "aeqprop-centered"],
        "paper_test_error": {"aeqprop-optimistic": 10.69, "aeqprop-pessimistic": 11.16,
                             "aeqprop-centered": 9.17, "autodiff": 29.55},
    },
    "reference-dense": {
        "source": "EBL study: the settings of the reference PyTorch implementation's timing (dense 784-1024-10, "
                  "c-ep, beta 0.2, batch 16, 15 free and 15 nudged iterations); its learning rate, init and "
                  "state space are not given: Aeqprop Table 2 state space, PyTorch's default Linear init "
                  "U(+-1/sqrt(fan_in)) (= init ebl, gain 1), SGD rate 0.03 from a 1-epoch sweep "
                  "(netlists/sweeps/reference-dense-lr.json)",
        "model": "hopfield:784-1024-10",
        "model_options": {
            "bounds": [(0.0, 1.0), (-1.0, 2.0)], "init": "ebl", "gains": [1.0, 1.0],
            "threshold": 0.0, "max_iterations": (15, 15),  # fixed iteration counts, no convergence test
            "schedule": "sequential", "cost_scale": 1.0, "precision": "float32",
        },
        "data": "fmnist",
        "algorithm": "c-ep", "beta": 0.2, "batch_size": 16, "epochs": 1, "trace_every": 0,
        "lr": 0.03,  # plain SGD, no momentum, no decay
        "paper_test_error": {"c-ep": 15.1},  # the reference implementation's 1-epoch test error
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
            # (network/cost.py), as the Aeqprop authors' (docs/results/ebl-study.md, "The cost convention decides n-ep")
            "cost_scale": 0.5, "precision": "float16",  # App. C.1: 16-bit
            "input_padding": 2,  # App. D: 28x28 padded to 32x32
            "width": 0.25,  # NOT in the paper: CPU-sized channels (128, 256, 512, 512) x width
        },
        "data": "fmnist", "normalize": (0.2860, 0.3530), "augment": "hflip",  # Table 4, App. D
        "beta": 0.25, "batch_size": 128, "epochs": 100,
        "lr": {"w1": 0.0625, "b1": 0.0625, "w2": 0.0375, "b2": 0.0375, "w3": 0.025, "b3": 0.025,
                          "w4": 0.02, "b4": 0.02, "w5": 0.0125, "b5": 0.0125},
        "momentum": 0.9, "weight_decay": 3e-4,
        "schedule": "cosine", "lr_floor": 2e-6,  # Table 5: cosine annealing over the run down to eta_min
        # tbp: K = 15 iterations (Table 5), TBP's default
        "algorithms": ["cl", "p-ep", "n-ep", "c-ep", "p-cpl", "n-cpl", "c-cpl", "tbp", "rbp"],
        "paper_test_error": {"c-ep": 6.47, "n-ep": 6.22, "tbp": 6.12, "rbp": 6.28, "cl": 10.10,
                             "p-ep": 90.00,
                             "p-cpl": 64.70, "n-cpl": 6.86, "c-cpl": 6.91},  # Table 1, FashionMNIST test
    },
    "ebl-dchn-cpu": {
        "source": "EBL comparative study, Sec. 3, App. C-D, Tables 4-5, on a CPU-sized DCHN: two conv layers of 16 "
                  "and 32 channels, the first 3 000 training images, batch 32, 10 epochs (not in the paper)",
        "model": "conv:1x28x28-16c3p1max-32c3p1max-10",
        "model_options": {
            "bounds": [(0.0, 1.0)] * 2 + [(-np.inf, np.inf)],  # Sec. 3 state space
            "init": "ebl", "gains": [0.5] * 3,  # Table 5, eq. (104)
            "bias_init": "fan-in",  # the study's code (not in the paper)
            "threshold": 0.0, "max_iterations": (60, 15),  # T and K of Table 5
            "schedule": "alternating",  # App. C asynchronous updates
            "cost_scale": 0.5,  # C = 1/2 |o - y|^2, as ebl-dchn
            "precision": "float32",
        },
        "data": "fmnist", "normalize": (0.2860, 0.3530), "augment": "hflip",  # Table 4, App. D
        "max_train": 3000,  # NOT in the paper: the first 3 000 training images
        "max_test": 2000,  # NOT in the paper: the first 2 000 test images (a fixed subset)
        "beta": 0.25, "batch_size": 32, "epochs": 10,  # Table 5 beta; batch and epochs NOT in the paper
        # Table 5's eta_1, eta_2 for the conv layers, eta_5 for the output layer, weights and biases alike
        "lr": {"w1": 0.0625, "b1": 0.0625, "w2": 0.0375, "b2": 0.0375, "w3": 0.0125, "b3": 0.0125},
        "momentum": 0.9, "weight_decay": 3e-4,
        "schedule": "cosine", "lr_floor": 2e-6,  # Table 5: cosine annealing over the run down to eta_min
        "trace_every": 0,  # no Lyapunov trace: it costs two extra settles per step
        # tbp: K = 15 iterations, TBP's default; rbp: algorithm_options {"max_iterations": 40, "tolerance": 1e-4}
        # (netlists/sweeps/ebl-dchn-cpu-rbp.json)
        "algorithms": ["c-ep", "n-ep", "p-ep", "cl", "p-cpl", "n-cpl", "c-cpl", "tbp", "rbp"],
    },
}


PRESETS: dict[str, dict] = {**HOPFIELD_PRESETS, **DRN_PRESETS}
# Keys of a preset that describe it rather than set the run: where its values come from, which
# rules it is for (the first is the default algorithm), and the paper's numbers.
PRESET_METADATA = ("source", "algorithms", "paper_test_error")


def preset_system(name: str, seed: int = 0, **model_options):
    """The system a preset trains, built with its model options (`model_options` override them)."""
    entry = PRESETS[name]
    return load_system(entry["model"], seed=seed, **{**entry.get("model_options", {}), **model_options})


def preset_rates(system, name: str) -> np.ndarray:
    """The preset's per-parameter rates as a (P,) array: epsilon (Aeqprop) or lr (EBL)."""
    entry = PRESETS[name]
    return system.per_parameter(entry.get("epsilon") or entry["lr"])
