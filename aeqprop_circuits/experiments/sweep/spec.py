"""Sweep specifications: fixed training options plus a grid, read from JSON, TOML or YAML.

A spec is validated once, here, at the boundary: every key must be a setting of a training
run (experiments/config.py, `TrainConfig`: the options of `aeqprop train`), every value must
be in that setting's range, every point must make a valid config, and every error names the
file, the key and what was expected. Inside, points are trusted.

    {"base": {"model": "netlists/iris.cir", "data": "iris", "epochs": 3},
     "grid": {"seed": [0, 1], "algorithm": ["c-ep", "p-ep"], "beta": [0.1, 0.2]}}

expands to the 8 points of the product, each named by its grid values in key order,
`algorithm=c-ep,beta=0.1,seed=0`: the name is the point's run directory, so a rerun finds it.
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
import re
from dataclasses import dataclass, field

from aeqprop_circuits.errors import AeqpropError
from aeqprop_circuits.experiments.config import FIELDS, ConfigError, check_setting, resolve

# Settings a point may set: all but the run directory, which the sweep chooses.
POINT_KEYS = tuple(key for key in FIELDS if key != "out")
TOP_LEVEL_KEYS = ("base", "grid")


class SweepSpecError(AeqpropError):
    """A sweep spec that cannot be run; the message names file, key and what was expected."""

    def __init__(self, file: str, message: str, key: str | None = None):
        self.file, self.key, self.reason = file, key, message
        super().__init__(f"{file}: {key}: {message}" if key else f"{file}: {message}")


@dataclass(frozen=True)
class Point:
    """One training run of a sweep: its grid values, its directory name and the options of `aeqprop train`."""

    values: dict  # grid key -> value, in grid key order (what varies)
    name: str  # "algorithm=c-ep,beta=0.1,seed=0": the run directory under DIR/points
    options: dict  # every setting of POINT_KEYS (None where the spec leaves it to the defaults); paths absolute

    @property
    def epochs(self) -> int | None:
        return self.options.get("epochs")


@dataclass(frozen=True)
class SweepSpec:
    file: str
    base: dict
    grid: dict  # key -> list of values, keys sorted
    points: list = field(default_factory=list)

    @property
    def group_keys(self) -> list:
        """Grid keys that define a combination (everything but the seed, which is averaged over)."""
        return [key for key in self.grid if key != "seed"]


def read_spec_file(path: str) -> dict:
    """The raw mapping of a .json, .toml or .yaml/.yml file."""
    if not os.path.isfile(path):
        raise SweepSpecError(path, "no such file" if not os.path.exists(path) else "not a file")
    extension = os.path.splitext(path)[1].lower()
    try:
        if extension == ".json":
            with open(path) as f:
                raw = json.load(f)
        elif extension == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        elif extension in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise SweepSpecError(path, "YAML specs need PyYAML (pip install pyyaml); "
                                           "or write the spec as .json or .toml") from None
            with open(path) as f:
                raw = yaml.safe_load(f)
        else:
            raise SweepSpecError(path, f"expected a .json, .toml or .yaml file, got '{extension or 'no extension'}'")
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise SweepSpecError(path, f"not valid {extension[1:].upper()}: {err}") from None
    except Exception as err:  # yaml.YAMLError does not derive from ValueError
        if type(err).__module__.startswith("yaml"):
            raise SweepSpecError(path, f"not valid YAML: {err}") from None
        raise
    if not isinstance(raw, dict):
        raise SweepSpecError(path, f"expected a mapping with keys {' and '.join(TOP_LEVEL_KEYS)}, "
                                   f"got {type(raw).__name__}")
    return raw


def _unknown_key(file: str, where: str, key, allowed) -> SweepSpecError:
    close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return SweepSpecError(file, f"unknown key{hint}; expected one of {', '.join(sorted(allowed))}",
                          key=f"{where}{key}")


def _convert(file: str, where: str, key: str, value):
    """The value checked as the setting takes it (a whole float is an integer where one is expected)."""
    default = FIELDS[key].default
    if isinstance(value, float) and isinstance(default, int) and not isinstance(default, bool) and value.is_integer():
        value = int(value)
    elif isinstance(value, int) and not isinstance(value, bool) and isinstance(default, float):
        value = float(value)
    try:
        check_setting(key, value)
    except ConfigError as err:
        raise SweepSpecError(file, str(err), key=where) from None
    return value


def _resolve_path(value: str, spec_dir: str) -> str:
    """An existing file named relative to the working directory or, failing that, to the spec's directory.

    Made absolute so that workers started elsewhere (same shared file system) find it too.
    Model specs such as `drn:4-8-3` and dataset names such as `iris` are left as they are.
    """
    for candidate in (value, os.path.join(spec_dir, value)):
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    return value


_UNSAFE = re.compile(r"[^A-Za-z0-9._+\-:@]+")


def format_value(key: str, value) -> str:
    """A grid value as it appears in a point's name: short, file-system safe, deterministic."""
    if isinstance(value, float):
        text = repr(value)
    elif key in ("model", "data") and isinstance(value, str) and os.sep in value:
        text = os.path.splitext(os.path.basename(value))[0]
    else:
        text = str(value)
    return _UNSAFE.sub("_", text).strip("_") or "_"


def point_name(values: dict) -> str:
    return ",".join(f"{key}={format_value(key, value)}" for key, value in values.items())


def load_spec(path: str) -> SweepSpec:
    """Read and validate a spec; expand its grid into points (the product, in sorted key order)."""
    raw = read_spec_file(path)
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise _unknown_key(path, "", key, TOP_LEVEL_KEYS)
    base, grid = raw.get("base", {}), raw.get("grid")
    if not isinstance(base, dict):
        raise SweepSpecError(path, f"expected a mapping of train options, got {json.dumps(base)}", key="base")
    if not isinstance(grid, dict) or not grid:
        raise SweepSpecError(path, "expected a mapping of option -> list of values with at least one option, "
                                   f"got {json.dumps(grid)}", key="grid")
    spec_dir = os.path.dirname(os.path.abspath(path))

    def checked(where: str, key, value):
        if key not in POINT_KEYS:
            raise _unknown_key(path, where, key, POINT_KEYS)
        value = _convert(path, f"{where}{key}", key, value)
        if key in ("model", "data") and isinstance(value, str):
            value = _resolve_path(value, spec_dir)
        return value

    fixed = {key: checked("base.", key, value) for key, value in base.items()}
    axes = {}
    for key in sorted(grid):
        values = grid[key]
        if key in base:
            raise SweepSpecError(path, "set both in base and in grid; keep it in one of them", key=f"grid.{key}")
        if not isinstance(values, list) or not values:
            raise SweepSpecError(path, f"expected a non-empty list of values, got {json.dumps(values)}",
                                 key=f"grid.{key}")
        converted = [checked("grid.", key, value) for value in values]
        names = [format_value(key, value) for value in converted]
        for k, name in enumerate(names):
            if name in names[:k]:
                raise SweepSpecError(path, f"value {json.dumps(values[k])} appears twice (as '{name}' in point names)",
                                     key=f"grid.{key}")
        axes[key] = converted
    if not {"model", "preset"} & (set(fixed) | set(axes)):
        raise SweepSpecError(path, "no model: set base.model (a netlist file or a spec such as drn:4-8-3), "
                                   "grid.model (a list of them) or a preset that names one")
    points = []
    for combination in itertools.product(*axes.values()):
        values = dict(zip(axes, combination))
        options = {**dict.fromkeys(POINT_KEYS), **fixed, **values}
        name = point_name(values)
        try:  # the settings together (e.g. momentum with an Aeqprop rule, a model's options)
            resolve(**{key: value for key, value in options.items() if value is not None})
        except ConfigError as err:
            raise SweepSpecError(path, str(err), key=f"point {name}") from None
        points.append(Point(values=values, name=name, options=options))
    return SweepSpec(file=path, base=fixed, grid=axes, points=points)
