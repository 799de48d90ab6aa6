"""``ivr prepare-graph``: mine the knowledge graph of a prepared split (part-of pairs from
its part annotations, plural and left/right names, WordNet kinds when nltk's corpus is
installed, word-vector neighbours when given) and write it beside the split.

``ivr prepare-data`` already does this for ADE20K and the synthetic data; run it again to
use word vectors, another threshold, or a COCO split.

Examples::

    ivr prepare-graph --data data/ADE
    ivr prepare-graph --data data/ADE --word-vectors glove.6B.300d.txt --min-part-count 10
    ivr prepare-graph --data data/coco --dataset coco --split trainval
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ivr_cli.display import err as console
from ivr_core.config import DATASETS
from ivr_core.data.dataset import PreparedSplit, load_prepared
from ivr_core.errors import IvrError
from ivr_core.graph.knowledge import EDGE_TYPES, build_graph, write_graph


def mine(split: PreparedSplit, min_part_count: int = 5,
         word_vectors: Path | None = None) -> Path:
    """Build, write and summarise the graph of ``split``; returns its path."""
    graph = build_graph(split, min_part_count, word_vectors)
    path = write_graph(split, graph)
    counts = ", ".join(f"{len(graph.edges[t])} {t}" for t in EDGE_TYPES if graph.edges[t])
    console.print(f"knowledge graph: {counts or 'no edges'} -> {path}")
    for note in graph.notes:
        console.print(f"  note: {note}")
    return path


def prepare_graph(
    data: Annotated[Path, typer.Option(help="Folder with the prepared split files.")],
    split: Annotated[str, typer.Option(help="Split to mine (the training split).")] = "train",
    dataset: Annotated[str, typer.Option(help="ade, coco or vg (data.dataset).")] = "ade",
    min_count: Annotated[int, typer.Option(help="ADE: the split's class threshold.")] = 5,
    min_part_count: Annotated[int, typer.Option(
        help="(part, whole) class pairs seen less often become no part_of edge.")] = 5,
    word_vectors: Annotated[Optional[Path], typer.Option(
        help="Word vectors (GloVe text format) for the similar edges.")] = None,
) -> None:
    """Mine the knowledge graph of a prepared split, for the global and full models.

    Example: ivr prepare-graph --data data/ADE --word-vectors glove.6B.300d.txt
    """
    if dataset not in DATASETS or min_part_count < 1:
        raise IvrError(f"--dataset must be {', '.join(DATASETS)} and --min-part-count >= 1")
    if word_vectors is not None and not word_vectors.is_file():
        raise IvrError(f"word vectors not found: {word_vectors}")
    mine(load_prepared(data, split, min_count, dataset=dataset), min_part_count, word_vectors)
