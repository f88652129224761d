"""What every command shares: user errors end in one line and an exit code, never a traceback."""

from __future__ import annotations

import functools
import sys
import warnings

import click

from aeqprop_circuits.data.datasets import DatasetWarning
from aeqprop_circuits.errors import AeqpropError, DivergenceError
from aeqprop_circuits.netlist.parser import NetlistWarning

EXIT_DIVERGED = 3


def progress_bar(quiet: bool) -> bool:
    """A progress bar only on a terminal: redirected to a log, it would write a line per refresh."""
    return not quiet and sys.stderr.isatty()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Package warnings as one line on stderr: 'Warning: file:line: ...' for a netlist's, 'Warning: ...' else."""
    where = f"{filename}:{lineno}: " if issubclass(category, NetlistWarning) else ""
    click.echo(f"Warning: {where}{message}", err=True)


def user_errors(command):
    """Turn package errors into `Error: message` on stderr and exit code 1 (3 for divergence)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings():
                shown = warnings.showwarning
                warnings.showwarning = lambda message, category, *rest: (
                    _show_warning(message, category, *rest) if issubclass(category, (NetlistWarning, DatasetWarning))
                    else shown(message, category, *rest))
                return command(*args, **kwargs)
        except DivergenceError as err:
            click.echo(f"Error: diverged: {err}", err=True)
            sys.exit(EXIT_DIVERGED)
        except AeqpropError as err:
            click.echo(f"Error: {err}", err=True)
            sys.exit(1)
        except (OSError, ValueError) as err:
            click.echo(f"Error: {err}", err=True)
            sys.exit(1)

    return wrapper
