"""What every command shares: user errors end in one line and an exit code, never a traceback."""

from __future__ import annotations

import functools
import sys

import click

from aeqprop_circuits.errors import AeqpropError, DivergenceError

EXIT_DIVERGED = 3


def user_errors(command):
    """Turn package errors into `Error: message` on stderr and exit code 1 (3 for divergence)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
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
