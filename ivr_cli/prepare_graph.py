"""``ivr prepare-graph``: mine the knowledge graph of a prepared split (part-of pairs from
its part annotations, plural and left/right names, WordNet kinds when nltk's corpus is
installed, word-vector neighbours when given) and write it beside the split.

``ivr prepare-data`` already does this for ADE20K and the synthetic data; run it again to
use word vectors, another threshold, or a COCO split. The threshold and the word vectors
come from ``graph.min_part_count`` and ``graph.word_vectors`` (config files, ``--set``), or
from the flags, which win.

Examples::

    ivr prepare-graph --data data/ADE
    ivr prepare-graph --data data/ADE --word-vectors glove.6B.300d.txt --min-part-count 10
    ivr prepare-graph --data data/ADE --set graph.word_vectors=glove.6B.300d.txt
    ivr prepare-graph --data data/coco --dataset coco --split trainval
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ivr_cli.display import err as console
from ivr_cli.options import ConfigFiles, SetItems, resolve
from ivr_core.config import GraphConfig
from ivr_core.config import DATASETS
from ivr_core.data.dataset import PreparedSplit, load_prepared
from ivr_core.errors import IvrError
from ivr_core.graph.knowledge import EDGE_TYPES, build_graph, write_graph


def mine(split: PreparedSplit, settings: GraphConfig | None = None) -> Path:
    """Build, write and summarise the graph of ``split`` with the part-count threshold and
    word vectors of ``settings`` (the ``graph`` config section); returns its path."""
    settings = settings or GraphConfig()
    vectors = Path(settings.word_vectors) if settings.word_vectors else None
    if vectors is not None and not vectors.is_file():
        raise IvrError(f"word vectors not found: {vectors} (graph.word_vectors)")
    graph = build_graph(split, settings.min_part_count, vectors)
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
    min_part_count: Annotated[Optional[int], typer.Option(
        help="(part, whole) class pairs seen less often become no part_of edge "
             "[default: graph.min_part_count, 5].")] = None,
    word_vectors: Annotated[Optional[Path], typer.Option(
        help="Word vectors (GloVe text format) for the class nodes and the similar edges "
             "[default: graph.word_vectors].")] = None,
    config: ConfigFiles = None,
    set_: SetItems = None,
) -> None:
    """Mine the knowledge graph of a prepared split, for the global and full models.

    Example: ivr prepare-graph --data data/ADE --word-vectors glove.6B.300d.txt
    """
    if dataset not in DATASETS or (min_part_count is not None and min_part_count < 1):
        raise IvrError(f"--dataset must be {', '.join(DATASETS)} and --min-part-count >= 1")
    cfg = resolve(config, set_, graph__min_part_count=min_part_count,
                  graph__word_vectors=str(word_vectors) if word_vectors else None)
    mine(load_prepared(data, split, min_count, dataset=dataset), cfg.graph)
