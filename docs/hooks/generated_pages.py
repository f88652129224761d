"""MkDocs hook: pages generated from the code at build time, so that they cannot drift.

- `reference/presets.md`: every preset of `aeqprop_circuits.experiments.presets.PRESETS`, with
  its source and every value it sets.
- `python-api.md`: a pointer to the docstring reference, only while the hand-written guide
  to the Python API does not exist yet.
"""

from __future__ import annotations

import json
import os

from mkdocs.structure.files import File

PRESETS_PAGE = "reference/presets.md"
API_GUIDE = "python-api.md"


def _value(value) -> str:
    """A preset value as compact JSON (tuples as lists, infinities as strings)."""

    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, float) and v in (float("inf"), float("-inf")):
            return "inf" if v > 0 else "-inf"
        return v

    return json.dumps(plain(value), ensure_ascii=False).replace("|", "\\|")


def presets_markdown() -> str:
    from aeqprop_circuits.experiments.presets import PRESETS

    lines = [
        "# Presets",
        "",
        "`aeqprop train --preset NAME` starts from one of these sets of hyperparameters; any option",
        "given on the command line overrides the preset's value, and `--set KEY=VALUE` overrides",
        "one model option. This page is generated from `aeqprop_circuits/experiments/presets.py`",
        "when the site is built.",
        "",
        "| preset | model | data | source |",
        "|---|---|---|---|",
    ]
    for name, entry in PRESETS.items():
        lines.append(f"| [`{name}`](#{name}) | `{entry.get('model', '')}` | `{entry.get('data', '')}` "
                     f"| {entry.get('source', '').replace('|', '/')} |")
    for name, entry in PRESETS.items():
        lines += ["", f"## {name} {{ #{name} }}", "", entry.get("source", ""), "",
                  "| key | value |", "|---|---|"]
        for key, value in entry.items():
            if key == "source":
                continue
            if key == "model_options":
                for option, option_value in value.items():
                    lines.append(f"| `model_options.{option}` | `{_value(option_value)}` |")
            else:
                lines.append(f"| `{key}` | `{_value(value)}` |")
    lines.append("")
    return "\n".join(lines)


API_PLACEHOLDER = """# Python API

The guide to the Python API is not written yet. The reference generated from the
docstrings is on the page [Python API (docstrings)](reference/api.md).
"""


def on_files(files, config):
    files.append(File.generated(config, PRESETS_PAGE, content=presets_markdown()))
    if not os.path.exists(os.path.join(config["docs_dir"], API_GUIDE)):
        files.append(File.generated(config, API_GUIDE, content=API_PLACEHOLDER))
    return files
