"""The knowledge graph over classes (the paper's global module, see docs/global.md).

Edge types, each with its reverse, each normalised per receiving class (the weights of the
edges of one type that arrive at a class sum to 1, so a class node averages what its
neighbours of that type send):

- ``part_of`` / ``has_part``: mined from the part annotations. A part region's parent is the
  region of the level above that covers most of its pixels (``parents`` in prepared splits);
  pairs (part class, whole class) seen at least ``min_part_count`` times in the split are
  kept, weighted by how often they occur.
- ``kind_of`` / ``has_kind``: WordNet hypernyms between class names, when the ``nltk``
  WordNet corpus is installed locally (otherwise skipped, with a note in the file).
- ``plural_of`` / ``singular_of``: names that are plural forms of others (``book`` /
  ``books``, ``shelf`` / ``shelves``).
- ``mirror``: ``left_x`` <-> ``right_x``.
- ``similar``: each class receives from its k nearest names by word-vector cosine
  similarity, when a word vector file is given (one word and its floats per line, GloVe
  text format). The same vectors (a name's words averaged) become the class nodes'
  initial features.

Stored as readable JSON beside the prepared split it was mined from (``<split>_graph.json``).
``graph.knowledge`` = ``empty`` or ``shuffled`` gives the controls of the global module: no
edges at all, or the same edges between randomly relabelled classes.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ivr_core.data.dataset import PreparedSplit
from ivr_core.errors import IvrError
from ivr_core.utils.files import UnreadableFile, open_checked
from ivr_core.utils.io import write_text

EDGE_TYPES = ("part_of", "has_part", "kind_of", "has_kind", "plural_of", "singular_of",
              "mirror", "similar")


@dataclass
class KnowledgeGraph:
    classes: list[str]
    edges: dict[str, dict[tuple[int, int], float]] = field(
        default_factory=lambda: {t: {} for t in EDGE_TYPES})
    notes: list[str] = field(default_factory=list)
    vectors: dict[int, list[float]] = field(default_factory=dict)  # class -> word vector

    def add(self, kind: str, src: int, dst: int, weight: float = 1.0) -> None:
        if src != dst:
            self.edges[kind][(src, dst)] = self.edges[kind].get((src, dst), 0.0) + weight

    def normalised(self) -> "KnowledgeGraph":
        """Each type's weights arriving at every class scaled to sum to 1."""
        out = KnowledgeGraph(self.classes, notes=list(self.notes), vectors=self.vectors)
        for kind, edges in self.edges.items():
            totals = Counter()
            for (_, dst), w in edges.items():
                totals[dst] += w
            out.edges[kind] = {e: w / totals[e[1]] for e, w in edges.items()}
        return out

    def ablated(self, kind: str, seed: int = 0) -> "KnowledgeGraph":
        """``mined``: this graph; ``empty``: no edges; ``shuffled``: every edge kept with
        its type and weight, between classes relabelled by a random permutation (seeded;
        the background stays where it is)."""
        if kind == "mined":
            return self
        out = KnowledgeGraph(self.classes, notes=list(self.notes), vectors=self.vectors)
        if kind == "shuffled":
            g = torch.Generator().manual_seed(seed)
            perm = torch.cat([torch.zeros(1, dtype=torch.long),
                              1 + torch.randperm(len(self.classes) - 1, generator=g)])
            out.edges = {t: {(int(perm[s]), int(perm[d])): w for (s, d), w in e.items()}
                         for t, e in self.edges.items()}
        elif kind != "empty":
            raise ValueError(f"unknown knowledge graph ablation {kind!r}")
        return out

    def vector_matrix(self) -> torch.Tensor | None:
        """(C, D) word vectors of the classes (zero rows where a name has none), or None."""
        if not self.vectors:
            return None
        dim = len(next(iter(self.vectors.values())))
        m = torch.zeros(len(self.classes), dim)
        for i, v in self.vectors.items():
            m[i] = torch.tensor(v)
        return m

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(index (2, M) src/dst, weight (M,), type (M,)) in EDGE_TYPES order."""
        rows = [(s, d, w, t) for t, kind in enumerate(EDGE_TYPES)
                for (s, d), w in sorted(self.edges[kind].items())]
        if not rows:
            return torch.zeros(2, 0, dtype=torch.long), torch.zeros(0), torch.zeros(0, dtype=torch.long)
        s, d, w, t = zip(*rows)
        return (torch.tensor([s, d], dtype=torch.long), torch.tensor(w, dtype=torch.float32),
                torch.tensor(t, dtype=torch.long))

    def strongest(self, n: int = 10) -> list[tuple[str, str, str, float]]:
        """The ``n`` heaviest edges per type, as (type, source, target, weight)."""
        out = []
        for kind, edges in self.edges.items():
            for (s, d), w in sorted(edges.items(), key=lambda e: -e[1])[:n]:
                out.append((kind, self.classes[s], self.classes[d], w))
        return out

    def to_json(self) -> dict:
        return {"classes": self.classes, "notes": self.notes,
                "edges": {kind: [[self.classes[s], self.classes[d], round(w, 6)]
                                 for (s, d), w in sorted(edges.items())]
                          for kind, edges in self.edges.items()},
                "vectors": {self.classes[i]: [round(x, 6) for x in v]
                            for i, v in sorted(self.vectors.items())}}

    @classmethod
    def from_json(cls, doc: dict, source: str) -> "KnowledgeGraph":
        try:
            graph = cls(doc["classes"], notes=doc.get("notes", []))
            index = {name: i for i, name in enumerate(graph.classes)}
            for kind, edges in doc["edges"].items():
                if kind not in graph.edges:
                    raise KeyError(f"unknown edge type {kind!r}")
                for src, dst, w in edges:
                    graph.edges[kind][(index[src], index[dst])] = float(w)
            graph.vectors = {index[name]: [float(x) for x in v]
                             for name, v in doc.get("vectors", {}).items()}
            if len({len(v) for v in graph.vectors.values()}) > 1:
                raise ValueError("word vectors of different sizes")
        except (KeyError, TypeError, ValueError) as e:
            raise IvrError(f"{source} is not a knowledge graph written by ivr ({e}); rebuild "
                           "it with `ivr prepare-graph`") from None
        return graph


def graph_path(split: PreparedSplit | str | os.PathLike) -> Path:
    """Where the graph mined from a prepared split (or the split file at that path) lives:
    beside it, ``<split>_graph.json``."""
    path = split.path if isinstance(split, PreparedSplit) else Path(split)
    return path.with_name(path.stem + "_graph.json")


def _plural(name: str) -> list[str]:
    forms = [name + "s", name + "es"]
    if name.endswith("y"):
        forms.append(name[:-1] + "ies")
    if name.endswith("f"):
        forms.append(name[:-1] + "ves")
    if name.endswith("fe"):
        forms.append(name[:-2] + "ves")
    return forms


def _wordnet_kinds(graph: KnowledgeGraph) -> None:
    try:
        from nltk.corpus import wordnet as wn
        wn.synsets("dog")
    except (ImportError, LookupError, OSError):
        graph.notes.append("no kind_of edges: the nltk WordNet corpus is not installed "
                           "(pip install nltk; python -m nltk.downloader wordnet)")
        return
    first = {}
    for i, name in enumerate(graph.classes[1:], 1):
        synsets = wn.synsets(name, pos=wn.NOUN)
        if synsets:
            first[i] = synsets[0]
    owner = {s: i for i, s in first.items()}
    for i, synset in first.items():
        for hyper in synset.closure(lambda s: s.hypernyms()):
            if hyper in owner and owner[hyper] != i:
                graph.add("kind_of", i, owner[hyper])


def _read_vectors(path: Path, wanted: set[str]) -> dict[str, np.ndarray]:
    """The vectors of the ``wanted`` words in a GloVe-style text file."""
    words: dict[str, np.ndarray] = {}
    try:
        with open_checked(path, what="word vectors file") as raw, \
                io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as f:
            for line in f:
                word, _, rest = line.rstrip().partition(" ")
                if word in wanted:
                    words[word] = np.array(rest.split(), dtype=np.float32)
    except UnreadableFile as e:
        raise IvrError(f"cannot read word vectors {path}: {e.reason}") from None
    except (OSError, ValueError) as e:
        raise IvrError(f"cannot read word vectors {path}: {e}") from None
    if len({v.shape for v in words.values()}) > 1:
        raise IvrError(f"word vectors {path} have lines of different lengths")
    return words


def _word_vectors(graph: KnowledgeGraph, path: Path, k: int) -> None:
    """Class nodes' vectors (a name's words averaged) and the ``similar`` edges: each class
    receives from its ``k`` nearest classes by cosine similarity."""
    words = _read_vectors(path, {t for name in graph.classes[1:] for t in name.lower().split("_")})
    for i, name in enumerate(graph.classes[1:], 1):
        parts = [words[t] for t in name.lower().split("_") if t in words]
        if parts:
            graph.vectors[i] = [round(float(x), 6) for x in np.mean(parts, 0)]
    graph.notes.append(f"word vectors of {path.name} cover {len(graph.vectors)} of "
                       f"{len(graph.classes) - 1} classes")
    if len(graph.vectors) < 2:
        graph.notes.append(f"no similar edges: {path.name} covers fewer than 2 class names")
        return
    ids = sorted(graph.vectors)
    m = np.array([graph.vectors[i] for i in ids], dtype=np.float64)
    m /= np.linalg.norm(m, axis=1, keepdims=True) + 1e-8
    sims = m @ m.T
    np.fill_diagonal(sims, -np.inf)
    for a, i in enumerate(ids):
        for b in np.argsort(-sims[a])[:k]:
            if sims[a, b] > 0:
                graph.add("similar", ids[b], i, float(sims[a, b]))


def build_graph(split: PreparedSplit, min_part_count: int = 5,
                word_vectors: str | os.PathLike | None = None, similar_k: int = 5) -> KnowledgeGraph:
    """Mine the knowledge graph of a prepared split (normally the training split)."""
    graph = KnowledgeGraph(list(split.classes))
    pairs: Counter = Counter()
    for rec in split.images:
        for region, parent in enumerate(rec.get("parents", [])):
            if parent >= 0:
                pairs[rec["classes"][region], rec["classes"][parent]] += 1
    for (part, whole), n in pairs.items():
        if n >= min_part_count:
            graph.add("part_of", part, whole, n)
            graph.add("has_part", whole, part, n)
    if not any("parents" in rec for rec in split.images):
        graph.notes.append(f"no part_of edges: {split.path} has no part annotations")
    index = {name: i for i, name in enumerate(graph.classes)}
    for i, name in enumerate(graph.classes[1:], 1):
        for form in _plural(name):
            if form in index:
                graph.add("plural_of", index[form], i)
                graph.add("singular_of", i, index[form])
        if name.startswith("left_") and "right_" + name[5:] in index:
            graph.add("mirror", i, index["right_" + name[5:]])
            graph.add("mirror", index["right_" + name[5:]], i)
    _wordnet_kinds(graph)
    for (s, d), w in list(graph.edges["kind_of"].items()):
        graph.add("has_kind", d, s, w)
    if word_vectors:
        _word_vectors(graph, Path(word_vectors), similar_k)
    else:
        graph.notes.append("no similar edges: no word vectors given (--word-vectors FILE)")
    return graph.normalised()


def _block(items: list[str], indent: str, open_: str, close: str) -> str:
    """``open_``, one item per line, ``close``: a readable JSON list or object body."""
    if not items:
        return open_ + close
    return open_ + ",".join(f"\n{indent}  {item}" for item in items) + f"\n{indent}{close}"


def write_graph(split: PreparedSplit, graph: KnowledgeGraph) -> Path:
    """Write the graph beside ``split``, atomically, one edge (and one class vector) per line."""
    doc = graph.to_json()
    edges = [f"{json.dumps(kind)}: " + _block([json.dumps(e) for e in rows], "   ", "[", "]")
             for kind, rows in doc["edges"].items()]
    vectors = [f"{json.dumps(name)}: {json.dumps(v)}" for name, v in doc["vectors"].items()]
    path = graph_path(split)
    write_text(path, "{\n" + f' "classes": {json.dumps(doc["classes"])},\n'
               f' "notes": {json.dumps(doc["notes"])},\n'
               f' "edges": {_block(edges, " ", "{", "}")},\n'
               f' "vectors": {_block(vectors, " ", "{", "}")}\n}}\n')
    return path


def load_graph(split: PreparedSplit, path: str | os.PathLike = "") -> KnowledgeGraph:
    """The graph mined from ``split`` (or the file ``path``), checked against its classes."""
    path = Path(path) if path else graph_path(split)
    if not path.is_file():
        raise IvrError(f"knowledge graph not found: {path}; build it with `ivr prepare-graph "
                       f"--data {split.path.parent} --split {split.path.stem}`")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IvrError(f"cannot read knowledge graph {path}: {e}") from None
    graph = KnowledgeGraph.from_json(doc, str(path))
    if graph.classes != split.classes:
        raise IvrError(f"{path} was mined for other classes than {split.path}; rebuild it with "
                       "`ivr prepare-graph`")
    return graph
