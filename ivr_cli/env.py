"""``ivr env``: versions, devices, toolchain and compiled-op status, for bug reports.

Example::

    ivr env
"""

from __future__ import annotations

from rich.table import Table

from ivr_cli.display import out as console
from ivr_core.envinfo import collect


def env() -> None:
    """Print what a bug report needs (versions, devices, compiled ops).

    Example: ivr env
    """
    table = Table(show_header=False)
    for key, value in collect():
        table.add_row(key, value)
    console.print(table)
