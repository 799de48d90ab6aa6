"""The ``ivr`` application: composes the commands and turns user errors into one line."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Annotated

import typer
from typer.core import TyperGroup

from ivr_cli import build_ext, demo, env, predict, prepare_data, prepare_graph, test, train
from ivr_cli import calibrate, export, report
from ivr_cli.processes import remember_argv
from ivr_core.errors import IvrError
from ivr_core.models.backbone import RandomInitWarning
from ivr_core.ops import OpsBackendWarning


class IvrGroup(TyperGroup):
    """Prints an IvrError as ``error: <message>`` and exits 1 (IVR_DEBUG=1: traceback);
    keeps the command line for ``--nproc`` (:mod:`ivr_cli.processes`)."""

    def make_context(self, info_name, args, parent=None, **extra):
        argv = list(args)
        ctx = super().make_context(info_name, args, parent=parent, **extra)
        remember_argv(ctx, argv)
        return ctx

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except IvrError as e:
            if os.environ.get("IVR_DEBUG"):
                raise
            rank = os.environ.get("RANK", "0")  # in a multi-process run, say which process
            where = "" if rank == "0" else f"[rank {rank}] "
            typer.secho(f"{where}error: {e}", err=True, fg="red")
            raise typer.Exit(1) from None


# rich_markup_mode=None: help texts are plain, so "[default: ...]" is shown, not eaten as markup
app = typer.Typer(cls=IvrGroup, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_show_locals=False,
                  help="Iterative Visual Reasoning (Chen et al., CVPR 2018): region "
                       "classification with a spatial memory.\n\nStart with: ivr demo")


def version_line() -> str:
    """ivr's version, torch's, and whether the compiled ops load, on one line."""
    import torch

    from ivr_core import __version__
    from ivr_core.ops import compiled_status

    loaded, ops = compiled_status()
    return (f"ivr {__version__}, torch {torch.__version__}, compiled ops: "
            + (ops if loaded else f"not loaded ({ops}; `ivr build-ext` builds them)"))


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print ivr's and torch's versions and whether the compiled ops load, "
             "then exit.")] = False) -> None:
    pass

app.command("prepare-data")(prepare_data.prepare_data)
app.command("prepare-graph")(prepare_graph.prepare_graph)
app.command("train")(train.train)
app.command("test")(test.test)
app.command("calibrate")(calibrate.calibrate)
app.command("predict")(predict.predict)
app.command("export")(export.export)
app.command("demo")(demo.demo)
app.command("build-ext")(build_ext.build_ext)
app.command("env")(env.env)
app.command("report")(report.report)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    kind = "note" if issubclass(category, OpsBackendWarning) else "warning"
    print(f"{kind}: {message}", file=sys.stderr)


def main() -> None:
    warnings.showwarning = _show_warning
    if os.environ.get("RANK", "0") != "0":  # the main process of a multi-process run says it
        warnings.simplefilter("ignore", OpsBackendWarning)
        warnings.simplefilter("ignore", RandomInitWarning)
    app()


if __name__ == "__main__":
    main()
