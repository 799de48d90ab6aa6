"""Options shared by several commands, declared once so every command spells them alike."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ivr_core.config import Config, load_config
from ivr_core.utils.tomltext import format_value

ConfigFiles = Annotated[Optional[list[Path]], typer.Option(
    "--config", "-c", help="TOML config file merged over the defaults (repeatable, in order).")]
SetItems = Annotated[Optional[list[str]], typer.Option(
    "--set", "-s", metavar="SECTION.KEY=VALUE",
    help="Override one config key, e.g. --set train.lr=0.001 (repeatable).")]
Device = Annotated[Optional[str], typer.Option(
    "--device", help="cpu, cuda, cuda:N or auto (runtime.device).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def resolve(config: list[Path] | None, sets: list[str] | None, base: Config | dict | None = None,
            **shortcuts) -> Config:
    """Defaults (or ``base``) <- config files <- --set items <- command-line shortcuts.

    ``shortcuts`` map "section.key" (with "_" for ".") to values; None means not given.
    """
    items = list(sets or [])
    for key, value in shortcuts.items():
        if value is not None:
            items.append(f"{key.replace('__', '.')}={format_value(value)}")
    return load_config(config or [], items, base=base)

