"""The one schema of a training run: `TrainConfig`, frozen and validated once.

The CLI (`aeqprop train` options), sweep specs and the Python API (`aeqprop_circuits.train`)
all build a TrainConfig with `resolve`: the defaults, then the data set's defaults (netlist
runs) or a preset's values, then what the user gave, later winning. Every value is checked
against its range before any work starts, and an unknown key is refused with the closest
valid name. `config.json` in a run directory is `TrainConfig.to_dict()` plus facts of the run
(`RUN_FACTS`), and `TrainConfig.from_dict` reads it back.

Units (DESIGN.md, "Scales"): beta, epsilon and lr are in the system's normalised units
(circuits: conductances in units of g0, potentials in volts, cost in V^2).
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.experiments.presets import PRESET_METADATA, PRESETS
from aeqprop_circuits.learning.algorithms import algorithm_names
from aeqprop_circuits.solvers import SOLVER_NAMES
from aeqprop_circuits.systems.hardware import HARDWARE_KINDS
from aeqprop_circuits.systems.models import check_model_options, model_kind

CONTROLLERS = ("oracle", "proportional", "integral")
AUGMENTS = ("none", "hflip")
SCHEDULES = ("exponential", "cosine")
TASKS = ("classification", "regression")
HARDWARE = HARDWARE_KINDS  # systems/hardware.py
TRAINING = ("in-situ", "transfer", "physics-aware", "fine-tune")  # the methods of experiments/hardware.py
# Written to config.json next to the config: what the run found, not what it was asked.
RUN_FACTS = ("g0", "n_parameters", "class_map", "netlist_sha256", "netlist_copy", "systems")


class ConfigError(AeqpropError):
    """A training setting out of range, of the wrong type, or unknown."""


def _doc(text: str, **extra) -> dict:
    return {"doc": text, **extra}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; `config.json` holds it, so a run can be repeated or resumed.

    The defaults train the shipped circuit netlists (docs/results/circuits.md has the validation runs
    behind them): centered EP with the oracle controller for Aeqprop, lr decay 0.95 per epoch.
    """

    model: str = field(metadata=_doc("netlist file or model spec (drn:1568-100-10, hopfield:784-2048-10, ...)"))
    data: str = field(default="iris", metadata=_doc("iris | wine | digits | fmnist | mnist:DIR | regression | "
                                                    "regression:fourier | xor | FILE.csv"))
    algorithm: str = field(default="c-ep", metadata=_doc("the learning rule"))
    algorithm_options: dict = field(default_factory=dict, metadata=_doc("options of the rule, e.g. "
                                                                        "{\"iterations\": 15} for tbp"))
    solver: str = field(default="auto", metadata=_doc("the solver settling circuit phases"))
    controller: str = field(default="oracle", metadata=_doc("Aeqprop homeostasis: oracle (uses dE/dtheta) or "
                                                            "proportional (agnostic); least control (lcp, "
                                                            "lcp-current, lcp-output): oracle (solves with the "
                                                            "circuit's model) or integral (observes the outputs, "
                                                            "injects currents)"))
    seed: int = field(default=0, metadata=_doc("seed of the data split, batch order, initial parameters"))
    beta: float = field(default=0.2, metadata=_doc("nudge strength (normalised units)", low=0.0, open_low=True))
    epsilon: Any = field(default=10.0, metadata=_doc("Aeqprop's knob coupling: its step is epsilon * beta times "
                                                     "the gradient (a number or per parameter group)", rate=True))
    lr: Any = field(default=2.0, metadata=_doc("learning rate of the EP, CL, CpL, exact and backprop rules "
                                               "(a number or per parameter group)", rate=True))
    schedule: str = field(default="exponential", metadata=_doc("rate schedule: exponential (x lr_decay per epoch) "
                                                               "or cosine (per step down to lr_floor)"))
    lr_decay: float = field(default=0.95, metadata=_doc("factor on lr and epsilon after each epoch (exponential)",
                                                        low=0.0, high=1.0, open_low=True))
    lr_floor: float = field(default=0.0, metadata=_doc("the rate a cosine schedule ends at", low=0.0))
    momentum: float = field(default=0.0, metadata=_doc("SGD momentum (v <- momentum v + g)", low=0.0, high=1.0,
                                                       open_high=True))
    weight_decay: float = field(default=0.0, metadata=_doc("SGD weight decay (g <- g + weight_decay theta)",
                                                           low=0.0))
    epochs: int = field(default=60, metadata=_doc("training epochs", low=1))
    batch_size: int = field(default=10, metadata=_doc("samples per step", low=1))
    relax_rounds: int = field(default=1, metadata=_doc("Aeqprop: relaxation rounds with the knobs clamped (1: "
                                                       "App. C's single parallel parameter relaxation)", low=1))
    points: int = field(default=2, metadata=_doc("multi-point-ep: the p of the p-point estimate", low=1))
    target_amplitude: float = field(default=0.5, metadata=_doc("one-hot targets at this value (volts for "
                                                               "circuits)", low=0.0, open_low=True))
    trace_every: int = field(default=1, metadata=_doc("Lyapunov trace every N steps (0: never)", low=0))
    augment: str = field(default="none", metadata=_doc("training-set augmentation: none or hflip (images)"))
    normalize: Any = field(default=None, metadata=_doc("(mean, std): inputs x -> (x - mean) / std"))
    max_test: Any = field(default=None, metadata=_doc("evaluate on the first N test samples only (a fixed "
                                                      "subset, for runs whose full evaluation costs too much)",
                                                      low=1, integer=True))
    max_train: Any = field(default=None, metadata=_doc("use only the first N training samples", low=1,
                                                       integer=True))
    task: Any = field(default=None, metadata=_doc("CSV data: classification or regression (default: guessed)"))
    test_fraction: Any = field(default=None, metadata=_doc("CSV data: fraction held out for testing",
                                                           low=0.0, high=1.0, open_low=True, open_high=True))
    hardware: str = field(default="none", metadata=_doc("the hardware the rule acts on, built from the netlist "
                                                        "(the model): none, mismatch, nonlinear, diode or spice"))
    mismatch: float = field(default=0.0, metadata=_doc("hardware: relative spread sigma of its element values "
                                                       "(0.1 = 10 %)", low=0.0, high=1.0))
    hardware_seed: int = field(default=0, metadata=_doc("hardware: seed of its device errors", low=0))
    nonlinearity: float = field(default=0.0, metadata=_doc("nonlinear hardware: gamma (1/V^2) of its trainable "
                                                           "elements' law I = g (V + gamma V^3)", low=0.0))
    training: str = field(default="in-situ", metadata=_doc("with a hardware: in-situ (the rule on the hardware), "
                                                           "transfer (on the model, then programmed), physics-aware "
                                                           "(hardware forward, model backward) or fine-tune"))
    transfer_epochs: int = field(default=10, metadata=_doc("fine-tune: epochs of exact-gradient training of the "
                                                           "model before it is programmed and trained in situ",
                                                           low=1))
    model_options: dict = field(default_factory=dict, metadata=_doc("options of the model's builder"))
    preset: Any = field(default=None, metadata=_doc("the preset the values came from"))
    out: Any = field(default=None, metadata=_doc("run directory"))

    def __post_init__(self):
        for f in fields(self):
            _check_field(f, getattr(self, f.name))
        _choice("algorithm", self.algorithm, algorithm_names())
        _choice("solver", self.solver, SOLVER_NAMES)
        _choice("controller", self.controller, CONTROLLERS)
        _choice("augment", self.augment, AUGMENTS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("hardware", self.hardware, HARDWARE)
        _choice("training", self.training, TRAINING)
        _check_hardware(self)
        if self.task is not None:
            _choice("task", self.task, TASKS)
        if self.normalize is not None and not (
                isinstance(self.normalize, (list, tuple)) and len(self.normalize) == 2
                and all(_is_number(v) for v in self.normalize) and self.normalize[1] > 0):
            raise ConfigError(f"normalize: expected [mean, std] with std > 0, got {self.normalize!r}")
        if self.controller == "integral" and not self.algorithm.startswith("lcp"):
            raise ConfigError(f"controller integral is a least-control controller (lcp, lcp-current, lcp-output); "
                              f"{self.algorithm} takes oracle or proportional (Aeqprop)")
        if self.momentum and self.is_aeqprop:
            raise ConfigError("momentum applies to the EP, CL, CpL, exact-gradient and backprop rules; an Aeqprop "
                              "step is the parameters' own relaxation")
        if self.weight_decay and self.is_aeqprop:
            raise ConfigError("weight_decay applies to the EP, CL, CpL, exact-gradient and backprop rules")
        try:
            check_model_options(self.model, dict(self.model_options))
        except AeqpropError as err:
            raise ConfigError(str(err)) from None

    @property
    def is_aeqprop(self) -> bool:
        return self.algorithm.startswith("aeqprop")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, where: str = "config") -> TrainConfig:
        """A config from a mapping (config.json, a sweep point); facts of a run are skipped, unknown keys refused."""
        values = {k: v for k, v in values.items() if k not in RUN_FACTS}
        unknown_keys(values, where)
        try:
            return cls(**values)
        except TypeError as err:
            raise ConfigError(f"{where}: {err}") from None

    def replace(self, **changes) -> TrainConfig:
        unknown_keys(changes, "changes")
        return replace(self, **changes)


FIELDS = {f.name: f for f in fields(TrainConfig)}


def check_setting(key: str, value) -> None:
    """Check one setting's value on its own (its type and range, or its choices): ConfigError if wrong."""
    unknown_keys({key: value}, "settings")
    _check_field(FIELDS[key], value)
    choices = {"algorithm": algorithm_names(), "solver": SOLVER_NAMES, "controller": CONTROLLERS,
               "augment": AUGMENTS, "schedule": SCHEDULES, "task": TASKS, "hardware": HARDWARE,
               "training": TRAINING}
    if key in choices and value is not None:
        _choice(key, value, choices[key])


def _check_hardware(config: TrainConfig) -> None:
    """The hardware settings together: each needs a hardware to apply to, and a method that can use it."""
    if config.hardware == "none":
        for key, neutral in (("mismatch", 0.0), ("nonlinearity", 0.0), ("training", "in-situ")):
            if getattr(config, key) != neutral:
                raise ConfigError(f"{key} ({option_name(key)}) applies to a hardware: give --hardware")
        return
    if config.nonlinearity and config.hardware != "nonlinear":
        raise ConfigError(f"nonlinearity (--nonlinearity) applies to --hardware nonlinear, not {config.hardware}")
    if model_kind(config.model) != "netlist":
        raise ConfigError(f"--hardware {config.hardware}: a hardware is built from a netlist, not {config.model}")
    if config.training == "physics-aware" and (config.is_aeqprop or config.algorithm.endswith("cpl")
                                               or config.algorithm == "cl"):
        raise ConfigError(f"physics-aware training computes the update with the model from nudged phases "
                          f"(EP rules, exact-gradient); {config.algorithm} has no such form")


def unknown_keys(values: dict, where: str) -> None:
    for key in values:
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: unknown setting '{key}'{hint}; valid: {', '.join(FIELDS)}")


def option_name(key: str) -> str:
    """How the CLI spells a setting: --batch-size for batch_size."""
    return f"--{key.replace('_', '-')}"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _choice(key: str, value, choices) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{key} ({option_name(key)}): '{value}'{hint} is not one of {', '.join(choices)}")


def _check_number(key: str, value, meta: dict, integer: bool) -> None:
    label = f"{key} ({option_name(key)})"
    if integer and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ConfigError(f"{label}: expected an integer, got {value!r}")
    if not _is_number(value):
        raise ConfigError(f"{label}: expected a finite number, got {value!r}")
    low, high = meta.get("low"), meta.get("high")
    too_low = low is not None and (value <= low if meta.get("open_low") else value < low)
    too_high = high is not None and (value >= high if meta.get("open_high") else value > high)
    if too_low or too_high:
        left = "(" if meta.get("open_low") else "["
        right = ")" if meta.get("open_high") else "]"
        span = f"{left}{low if low is not None else '-inf'}, {high if high is not None else 'inf'}{right}"
        raise ConfigError(f"{label}: {value!r} is out of range {span}: {meta['doc']}")


def _check_field(f, value) -> None:
    meta = f.metadata
    if f.name in ("model",):
        if not isinstance(value, str) or not value:
            raise ConfigError("no model: give a netlist file, --model SPEC or a --preset that names one")
        return
    if meta.get("rate"):
        groups = value.items() if isinstance(value, dict) else [(None, value)]
        for group, rate in groups:
            key = f"{f.name}[{group}]" if group is not None else f.name
            _check_number(key, rate, {"low": 0.0, "open_low": True, "doc": meta["doc"]}, integer=False)
        return
    if f.name in ("algorithm_options", "model_options"):
        if not isinstance(value, dict):
            raise ConfigError(f"{f.name}: expected a mapping of option names to values, got {value!r}")
        return
    if value is None and f.default is None:
        return
    if "low" in meta or "high" in meta:
        default = f.default if f.default is not MISSING else None
        integer = meta.get("integer") or isinstance(default, int) and not isinstance(default, bool)
        _check_number(f.name, value, meta, integer)
    elif isinstance(f.default, str) and not isinstance(value, str):
        raise ConfigError(f"{f.name} ({option_name(f.name)}): expected text, got {value!r}")
    elif f.name == "seed":
        _check_number("seed", value, {"low": 0, "doc": meta["doc"]}, integer=True)


# --- resolution ----------------------------------------------------------------------------------
# Per dataset, over the defaults (netlist runs only): Wine at lr 2 keeps its validation accuracy but
# some steps raise the Lyapunov function; at lr 0.5 none do (docs/results/circuits.md, "How the defaults were chosen").
DATASET_DEFAULTS = {"wine": {"lr": 0.5, "epsilon": 2.5}}
# Under a preset, settings the preset does not name take these neutral values instead of the
# netlist defaults: no decay, the joint relaxation of Theorems 1-3, unit targets.
PRESET_BASE = {"lr_decay": 1.0, "relax_rounds": 20, "target_amplitude": 1.0}


def resolve(model: str | None = None, preset: str | None = None, **given) -> TrainConfig:
    """Defaults, then the data set's or the preset's values, then `given` (None means not given).

    `model_options` given are merged key by key over the preset's.
    """
    unknown_keys(given, "settings")
    given = {k: v for k, v in given.items() if v is not None}
    values: dict = {}
    if preset:
        if preset not in PRESETS:
            close = difflib.get_close_matches(preset, PRESETS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown preset '{preset}'{hint}; expected one of {', '.join(PRESETS)}")
        entry = PRESETS[preset]
        values.update(PRESET_BASE)
        values.update({k: v for k, v in entry.items() if k not in PRESET_METADATA})
        if "algorithm" not in entry and entry.get("algorithms"):
            values["algorithm"] = entry["algorithms"][0]
        values["preset"] = preset
    else:
        data = str(given.get("data") or FIELDS["data"].default).split(":")[0]
        values.update(DATASET_DEFAULTS.get(data, {}))
    options = {**values.get("model_options", {}), **given.pop("model_options", {})}
    values.update(given)
    values["model_options"] = options
    values["model"] = model or values.get("model")
    if not values["model"]:
        raise ConfigError("no model: give a netlist file, --model SPEC or a --preset that names one")
    return TrainConfig(**values)


def parse_settings(settings) -> dict:
    """`KEY=VALUE` pairs (`--set`) as a dict; values are JSON (1.0, [0, 1], "text") or else plain strings."""
    parsed = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got '{item}'")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed
