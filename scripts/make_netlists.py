"""Write the shipped netlists that come from builders: iris, wine, linear_regression, regression_fourier.

    python scripts/make_netlists.py [DIRECTORY]     # default: netlists

What each is built from: aeqprop_circuits/experiments/netlists.py.
"""

import argparse

from aeqprop_circuits.experiments.netlists import write_built_netlists

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default="netlists",
                        help="where to write the .cir files (default: %(default)s)")
    for path in write_built_netlists(parser.parse_args().directory):
        print(path)
