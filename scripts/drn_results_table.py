"""Markdown table of test error per epoch of the docs/drn.md runs (scripts/drn_runs.sh).

    python scripts/drn_results_table.py [RUNS_DIR]     # default runs/drn/v2
"""

from __future__ import annotations

import csv
import os
import sys

RUNS = [("DRN-XS c-ep", "xs-cep"), ("DRN-XS p-ep", "xs-pep"), ("DRN-XS exact-gradient", "xs-exact"),
        ("DRN-XS aeqprop-centered", "xs-aeqprop-centered"), ("DRN-1H c-ep", "1h-cep")]


def errors(path: str) -> dict[int, float]:
    path = os.path.join(path, "metrics.csv")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {int(row["epoch"]): 100 * float(row["test_error"]) for row in csv.DictReader(f)}


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "runs/drn/v2"
    data = [(name, errors(os.path.join(root, path))) for name, path in RUNS]
    last = max((max(d) for _, d in data if d), default=0)
    print("| epoch | " + " | ".join(name for name, _ in data) + " |")
    print("|---" * (len(data) + 1) + "|")
    for epoch in range(1, last + 1):
        print(f"| {epoch} | " + " | ".join(f"{d[epoch]:.2f}" if epoch in d else "" for _, d in data) + " |")


if __name__ == "__main__":
    main()
