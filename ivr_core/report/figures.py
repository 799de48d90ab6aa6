"""The pictures of the report page: each distinct picture embedded once, as a ``data:`` URI,
at the width the page shows it.

The visualizations of the runs are re-encoded for the page (:mod:`ivr_core.visualization.
encode`: scaled to the page width, photo-like ones as lossy WebP), so a report of three
runs with a few test images each stays a few MB. A file whose bytes equal an earlier one's
(the full model's ``_iterations.png`` is its ``_local_iterations.png``) is shown once: in the
same image's group under both names, elsewhere as a link to the first.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ivr_core.report.collect import Run, image_key, view_rank
from ivr_core.visualization.encode import decode_image, encode_for_page

MAX_FIGURES = 200  # per run, by default: more visualizations than this are counted, not shown


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@dataclass
class Figure:
    """One picture on the page, or a pointer to where the same picture already is."""

    anchor: str  # the element id other figures link to
    run: int  # index of the run whose folder holds the files
    names: list[str]  # the files it shows (paths relative to the run folder)
    src: str = ""  # data: URI; empty for a repeat
    width: int = 0
    height: int = 0
    same_as: "Figure | None" = None  # a repeat: the figure that shows these bytes


@dataclass
class Group:
    """The figures of one test image of one run."""

    key: str
    figures: list[Figure] = field(default_factory=list)


@dataclass
class RunGallery:
    run: int  # index into the runs
    groups: list[Group] = field(default_factory=list)
    shown: int = 0  # figure files embedded or pointed to
    total: int = 0  # figure files found
    notes: list[str] = field(default_factory=list)  # files that could not be shown, the limit


class FigureStore:
    """Encodes each distinct file content once; later equal files point to the first."""

    def __init__(self) -> None:
        self._by_digest: dict[str, Figure] = {}
        self._count = 0

    def add(self, run: int, name: str, data: bytes) -> Figure:
        """A new figure for ``data`` (file ``name`` of run ``run``), or a repeat of the one
        already holding these bytes. ValueError when ``data`` is not a readable image."""
        digest = hashlib.sha256(data).hexdigest()
        first = self._by_digest.get(digest)
        self._count += 1
        anchor = f"figure-{self._count}"
        if first is not None:
            return Figure(anchor, run, [name], same_as=first)
        encoded = encode_for_page(decode_image(data))
        figure = Figure(anchor, run, [name], data_uri(encoded.mime, encoded.data),
                        encoded.width, encoded.height)
        self._by_digest[digest] = figure
        return figure


def _place(group: Group, figure: Figure) -> None:
    """Add ``figure`` to ``group``; a repeat of a figure of the same group only adds its
    name to that figure."""
    if figure.same_as is not None and figure.same_as in group.figures:
        figure.same_as.names += figure.names
    else:
        group.figures.append(figure)


def _run_gallery(index: int, run: Run, max_figures: int, store: FigureStore) -> RunGallery:
    shown = RunGallery(index, total=len(run.images))
    paths_by_image: dict[str, list[Path]] = {}
    for path in run.images:
        paths_by_image.setdefault(image_key(run.path, path), []).append(path)
    for key, paths in paths_by_image.items():
        group = Group(key)
        for path in sorted(paths, key=view_rank):
            if shown.shown >= max_figures:
                break
            name = path.relative_to(run.path).as_posix()
            try:
                figure = store.add(index, name, path.read_bytes())
            except OSError as e:
                shown.notes.append(f"{name} could not be read ({type(e).__name__})")
                continue
            except ValueError as e:  # not an image
                shown.notes.append(f"{name}: {e}")
                continue
            shown.shown += 1
            _place(group, figure)
        if group.figures:
            shown.groups.append(group)
    left_out = shown.total - shown.shown - len(shown.notes)
    if left_out:
        shown.notes.append(f"{left_out} of the {shown.total} figures are not embedded (at most "
                           f"{max_figures} per run); all are in {run.path / 'visualizations'}")
    return shown


def gallery(runs: list[Run], max_figures: int = MAX_FIGURES,
            store: FigureStore | None = None) -> list[RunGallery]:
    """Per run, its visualizations grouped by the test image they show, in view order
    (labels, iterations, memory, attention, others); at most ``max_figures`` files per run."""
    store = store or FigureStore()
    return [_run_gallery(i, run, max_figures, store) for i, run in enumerate(runs)]
