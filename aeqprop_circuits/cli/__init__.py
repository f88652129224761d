"""Command-line interface. BLAS is pinned to one thread unless the user says otherwise: the
products here are small and batched, and on two cores with other work running a threaded
BLAS is measured to be up to 80x slower on them (docs/explanation/design.md)."""

import os

for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
