"""Errors the package raises at its boundaries.

Every error a user can cause derives from `AeqpropError`; the CLI prints its message on one
line and exits non-zero, so no user mistake ever surfaces as a Python traceback.
"""

from __future__ import annotations


class AeqpropError(Exception):
    """Base class of every error caused by input (files, options, data)."""


class NetlistError(AeqpropError):
    """A netlist the parser cannot accept. The message names file, line, column and what was expected."""

    def __init__(self, message: str, file: str = "<string>", line: int | None = None,
                 column: int | None = None):
        self.file, self.line, self.column, self.reason = file, line, column, message
        where = file
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        super().__init__(f"{where}: {message}")


class CircuitError(AeqpropError):
    """A circuit that parses but has no well-defined operating point (floating node, source loop...)."""


class SolverError(AeqpropError):
    """A solver that cannot be used here (unknown name, unsupported element, missing ngspice)."""


class DivergenceError(AeqpropError):
    """A learning run that left the region where its phases are defined (NaN, unbounded energy)."""


class DatasetError(AeqpropError):
    """A dataset that cannot be loaded; the message says how to get it."""


class ThreadsWarning(UserWarning):
    """A setting that makes threads compete for the cores (a threaded BLAS beside numba's loops)."""
