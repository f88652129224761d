"""Run the solve benchmark and write docs/benchmarks.md.

    nice python scripts/bench_solve.py                 # H = 10, 100, 1024 (ngspice at H=1024 takes minutes)
    nice python scripts/bench_solve.py --hidden 10 100 --no-ngspice
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from aeqprop_circuits.bench.solve import bench_solve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[10, 100, 1024])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--spice-repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ngspice", action="store_true")
    parser.add_argument("--output", default="docs/benchmarks.md")
    args = parser.parse_args(argv)
    rows, table = bench_solve(tuple(args.hidden), seed=args.seed, batch=args.batch, repeats=args.repeats,
                              spice_repeats=args.spice_repeats, ngspice=not args.no_ngspice,
                              log=lambda message: print(message, file=sys.stderr, flush=True))
    command = "nice python scripts/bench_solve.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = f"# Benchmarks\n\n## Solve: ours vs ngspice\n\nProduced by `{command.strip()}`.\n\n{table}"
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(table)


if __name__ == "__main__":
    main()
