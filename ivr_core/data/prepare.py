"""``ivr prepare-data``: ADE-format dataset -> one prepared JSON per split, in parallel."""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
from dataclasses import dataclass, field
from pathlib import Path

from ivr_core.config import DataConfig
from ivr_core.data import ade
from ivr_core.data.dataset import prepared_name
from ivr_core.utils.files import UnreadableFile
from ivr_core.utils.io import staged_outputs, write_json
from ivr_core.utils.progress import progress_bar


@dataclass
class SplitSummary:
    split: str
    path: Path
    listed: int = 0  # entries of the split file
    images: int = 0  # of them kept (the others are listed among the problems)
    regions: int = 0
    empty: int = 0  # images kept in the list without any region
    unknown_instances: int = 0  # instances named in _atr.txt but not in objectnames.txt


@dataclass
class PrepareReport:
    classes: int
    splits: list[SplitSummary] = field(default_factory=list)
    problems: list[ade.Problem] = field(default_factory=list)  # images skipped, and why
    notes: list[ade.Problem] = field(default_factory=list)  # images kept, with a remark


def _parse_one(rel_path: str, root: Path, class_index: dict[str, int], known: set[str],
               max_pixels: int) -> ade.ParsedImage | ade.Problem:
    try:
        return ade.parse_image(root, rel_path, class_index, known, max_pixels)
    except UnreadableFile as e:
        return ade.Problem(e.path, e.reason)


def prepare_ade(root: str | os.PathLike, split_dir: str | os.PathLike = ade.DEFAULT_SPLIT_DIR,
                min_count: int = 5, out_dir: str | os.PathLike | None = None,
                splits: tuple[str, ...] = ade.SPLITS, workers: int | None = None,
                extra: dict | None = None, show_progress: bool = True,
                max_pixels: int = DataConfig.max_pixels) -> PrepareReport:
    """Parse every split of an ADE-format dataset and write ``ade_<split>_<min_count>.json``.

    Images whose files are missing or corrupt are skipped and listed in the report; the
    remaining ones are written. The split files appear together when all are parsed (an
    interruption leaves the earlier ones as they were). ``extra`` keys are stored in every
    prepared file.
    """
    root, split_dir = Path(root).resolve(), Path(split_dir)
    out_dir = Path(out_dir) if out_dir is not None else root
    ade.check_root(root, split_dir, splits)
    classes = ade.load_classes(split_dir, min_count)
    class_index = {name: i for i, name in reversed(list(enumerate(classes)))}  # first wins
    report = PrepareReport(classes=len(classes))
    workers = workers or min(8, os.cpu_count() or 1)
    parse = functools.partial(_parse_one, root=root, class_index=class_index,
                              known=ade.load_names(split_dir), max_pixels=max_pixels)
    with staged_outputs(out_dir) as staging:
        for split in splits:
            entries = ade.read_split(split_dir, split)
            name = prepared_name(split, min_count)
            summary = SplitSummary(split, out_dir / name, listed=len(entries))
            records = []
            results = _map(parse, entries, workers)
            for result in progress_bar(results, total=len(entries), description=f"{split:>6}",
                                       enabled=show_progress):
                if isinstance(result, ade.Problem):
                    report.problems.append(result)
                    continue
                rec = result.record
                records.append(rec)
                report.notes += [ade.Problem(str(root / rec["image"]), n) for n in result.notes]
                summary.images += 1
                summary.regions += len(rec["boxes"])
                summary.empty += not rec["boxes"]
                summary.unknown_instances += result.unknown
            doc = {"classes": classes, "root": portable_root(root, out_dir), "split": split,
                   "min_count": min_count, **(extra or {}), "images": records}
            write_json(staging / name, doc)
            report.splits.append(summary)
    return report


def _map(fn, items: list, workers: int):
    if workers <= 1 or len(items) < 64:
        yield from map(fn, items)
        return
    # fork is cheapest where it is safe (Linux); elsewhere the platform default
    method = "fork" if "fork" in mp.get_all_start_methods() and os.name == "posix" else None
    with mp.get_context(method).Pool(workers) as pool:
        yield from pool.imap(fn, items, chunksize=16)


def portable_root(root: Path, out_dir: Path) -> str:
    """The root as a path relative to the prepared files when possible, so both can move."""
    try:
        return os.path.relpath(root, out_dir.resolve())
    except ValueError:  # different drives on Windows
        return str(root)
