"""The report page: ``templates/report.html`` rendered by Jinja2 with autoescape, the
stylesheet (``templates/report.css``) and every picture inlined.

Each section's data comes from :mod:`ivr_core.report.sections` (tables, plots) and
:mod:`ivr_core.report.figures` (the visualizations); the templates only lay it out. With
autoescape every value is printed as text, whatever a class name, config value or folder
name holds. No script, font or stylesheet is fetched: the file works offline.
"""

from __future__ import annotations

import time
from functools import lru_cache
from importlib import resources
from typing import NamedTuple

import jinja2
from markupsafe import Markup

from ivr_core import __version__
from ivr_core.report import plots, sections
from ivr_core.report.collect import Run
from ivr_core.report.figures import MAX_FIGURES, gallery

NAV = (("runs", "Runs"), ("config", "Configuration"), ("training", "Training"),
       ("evaluation", "Evaluation"), ("classes", "Per-class AP"),
       ("knowledge", "Knowledge graph"), ("visualizations", "Visualizations"),
       ("environment", "Environment"))


class RunLabel(NamedTuple):
    name: str
    color: str  # the run's colour, the same in every plot


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("ivr_core.report", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


@lru_cache(maxsize=1)
def _css() -> Markup:
    # our own file, inlined as it is: escaping would break its quoted font names
    return Markup(resources.files("ivr_core.report").joinpath("templates", "report.css")
                  .read_text(encoding="utf-8"))


def render(runs: list[Run], title: str | None = None, max_figures: int = MAX_FIGURES) -> str:
    """The whole page as one string; at most ``max_figures`` visualizations per run."""
    return _environment().get_template("report.html").render(
        title=title or "ivr report: " + ", ".join(r.name for r in runs),
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"), version=__version__, css=_css(),
        nav=NAV, headline=sections.HEADLINE, top_edges=sections.TOP_EDGES,
        runs=[RunLabel(r.name, plots.color(i)) for i, r in enumerate(runs)],
        overview=sections.overview(runs), config=sections.config(runs),
        training=sections.training(runs), evaluation=sections.evaluation(runs),
        per_class=sections.per_class(runs), knowledge=sections.knowledge(runs),
        gallery=gallery(runs, max_figures), environment=sections.environment(runs)) + "\n"
