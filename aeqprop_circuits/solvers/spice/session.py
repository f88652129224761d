"""libngspice through PySpice: load a netlist, run an analysis, read its vectors back.

The shared library is one per process (PySpice's `NgSpiceShared.new_instance`), and so is its
`Session`. PySpice raises on any stderr line that is not a "Warning:" (ngspice's "Note: ..."
lines too), so what worked is judged by what ngspice printed and produced, not by those
exceptions. PySpice is imported only inside these functions, never at package import.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from aeqprop_circuits.errors import SolverError

INSTALL_HINT = ("install it with `apt-get install ngspice libngspice0-dev` (Debian/Ubuntu), "
                "`brew install ngspice` (macOS) or `conda install -c conda-forge ngspice`, and "
                "`pip install PySpice`; set NGSPICE_LIBRARY_PATH if libngspice is in an unusual place")


@contextlib.contextmanager
def quiet():
    """Silence PySpice's loggers (version warnings, ngspice stderr echoed as errors)."""
    logger = logging.getLogger("PySpice")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def ngspice_instance():
    """The process-wide NgSpiceShared instance; SolverError when ngspice or PySpice is missing."""
    try:
        with quiet():
            from PySpice.Spice.NgSpice.Shared import NgSpiceShared

            return NgSpiceShared.new_instance()
    except Exception as error:  # ImportError, OSError from dlopen, ngspice init failures
        raise SolverError(f"ngspice not found ({type(error).__name__}: {error}): {INSTALL_HINT}") from None


def ngspice_available() -> bool:
    """True when the `spice` solver can run here."""
    try:
        ngspice_instance()
    except SolverError:
        return False
    return True


def session() -> Session:
    """The session of this process's libngspice; SolverError when ngspice is missing or lost."""
    found = _session_of(ngspice_instance())
    if found.lost:
        raise SolverError("libngspice stopped after a netlist it could not parse and cannot be "
                          "reloaded in this process; restart Python to use the spice solver again")
    return found


@functools.cache
def _session_of(ng) -> Session:
    return Session(ng)


def ngspice_message(output: str, limit: int = 6) -> str:
    """ngspice's distinct errors and warnings (not its notes) on one line."""
    lines = [re.sub(r"^(Trying gmin|Supplies reduced)[^A-Z]*[^ ]*\s*", "", line.strip())
             for line in output.splitlines()]
    keep = [line for line in lines if re.search(r"error|warning|singular|converge|abort|fail|limit",
                                                  line, re.IGNORECASE)]
    distinct = list(dict.fromkeys(keep))
    return "; ".join(distinct[:limit]) + ("; ..." if len(distinct) > limit else "")


@dataclass(eq=False)
class Session:
    """The loaded libngspice. `lost`: ngspice said it cannot recover (after a netlist it could not
    parse), and the library stays unusable for the rest of the process. `owner`: the `LoadedCircuit`
    whose netlist ngspice holds now (None after any other load or a clear)."""

    ng: object
    lost: bool = False
    owner: object = None

    def command(self, command: str) -> str:
        """Run one ngspice command; its stdout and stderr (PySpice's exceptions on stderr lines ignored)."""
        from PySpice.Spice.NgSpice.Shared import NgSpiceCommandError

        with contextlib.suppress(NgSpiceCommandError, NameError):
            self.ng.exec_command(command)
        return self.ng.stdout + "\n" + self.ng.stderr

    def load(self, text: str) -> tuple[str | None, float]:
        """Load a netlist (`source` of a temporary file): (ngspice's refusal or None, seconds)."""
        from PySpice.Spice.NgSpice.Shared import NgSpiceCommandError

        self.owner = None
        handle = tempfile.NamedTemporaryFile("w", suffix=".cir", delete=False)
        try:
            with handle:
                handle.write(text)
            t0 = time.perf_counter()
            refused = False
            try:
                self.ng.exec_command(f"source {handle.name}")
            except NgSpiceCommandError:
                pass
            except NameError:  # PySpice's exception for a non-zero return code
                refused = True
            seconds = time.perf_counter() - t0
            output = self.ng.stdout + "\n" + self.ng.stderr
            self.lost = self.lost or "cannot recover" in output
            if refused or self.lost or re.search(r"^\s*(error|please check your input)", output,
                                                 re.IGNORECASE | re.MULTILINE):
                return "ngspice refused the netlist: " + ngspice_message(output), seconds
            return None, seconds
        finally:
            os.unlink(handle.name)

    def analyse(self, command: str, kind: str, reject_fallback: bool = True
                ) -> tuple[dict[str, np.ndarray] | None, str, float]:
        """Run an analysis of the loaded circuit: (its vectors or None, ngspice's message, seconds).

        The vectors are arrays (one value per point), names lower case; the plot is destroyed
        after reading. A result reached by ngspice's transient-op fallback (after gmin and
        source stepping failed) is no operating point: None with reject_fallback, else the
        message starts "source stepping failed".
        """
        t0 = time.perf_counter()
        output = self.command(command)
        seconds = time.perf_counter() - t0
        message = ngspice_message(output)
        plot_names = self.ng.plot_names
        fallback = re.search(r"source stepping failed", output, re.IGNORECASE) is not None
        if fallback and not reject_fallback:
            message = "source stepping failed; " + message
        if fallback and reject_fallback:
            message = ("gmin and source stepping failed; ngspice's transient-op fallback is not "
                       "accepted as an operating point: " + message)
            plot_names = [name for name in plot_names if not name.startswith(kind)]
        if not plot_names or not plot_names[0].startswith(kind):
            with contextlib.suppress(Exception):
                if self.ng.plot_names and self.ng.plot_names[0] != "const":
                    self.ng.destroy(self.ng.plot_names[0])
            return None, message or "no result", seconds
        plot = self.ng.plot(None, plot_names[0])
        vectors = {name.lower(): np.atleast_1d(np.real(np.asarray(vector._data))).astype(float)
                   for name, vector in plot.items()}
        with contextlib.suppress(Exception):
            self.ng.destroy(plot_names[0])
        return vectors, message, seconds

    def clear(self) -> None:
        """Forget every plot and the loaded circuit."""
        self.owner = None
        with contextlib.suppress(Exception):
            self.ng.destroy("all")
        with contextlib.suppress(Exception):
            self.ng.remove_circuit()
