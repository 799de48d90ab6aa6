"""Every document the repository's files cite is in the repository, with the cited heading.

Citations take the form ``docs/<name>.md`` optionally followed by quoted headings
(``docs/design.md, "Losses"`` or ``..., "Attention" and "Losses"``, possibly across a line
break); Markdown files may also link relative paths (``[global.md](global.md)``). The
design reference the project started from lived outside the repository; a citation of it
by its old section-number form is reported too.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED_DIRS = ("ivr_core", "ivr_cli", "tests", "bench", "docs", "ext")
SCANNED_FILES = ("README.md", "ivr.toml", "pyproject.toml")
SUFFIXES = {".py", ".md", ".toml", ".txt", ".cpp", ".h", ".cu", ".sh", ".cfg", ".yml", ".yaml"}

# Assembled from parts so that this file does not cite what it looks for.
OUTSIDE = re.compile("DESIGN" + r"(?:\s*§|\.md)")
DOC = re.compile(r"(?<![\w/.-])docs/([\w.-]+\.md)")
HEADINGS = re.compile(r'[\s#]*,[\s#]*("[^"\n]+"(?:[\s#]*(?:,|and)[\s#]*"[^"\n]+")*)')
QUOTED = re.compile(r'"([^"\n]+)"')
LINK = re.compile(r"\]\(([^)\s]+)\)")


def scanned_files(root: Path) -> list[Path]:
    files = [root / name for name in SCANNED_FILES if (root / name).is_file()]
    for folder in SCANNED_DIRS:
        files += sorted(p for p in (root / folder).rglob("*")
                        if p.is_file() and p.suffix in SUFFIXES)
    return files


def headings(doc: Path) -> set[str]:
    return {line.strip("#").strip() for line in doc.read_text(encoding="utf-8").splitlines()
            if re.match(r"#{1,6} ", line)}


def citation_problems(root: Path) -> list[str]:
    """``"<file>:<line>: <what is wrong>"`` for every citation under ``root`` of a document
    or heading that is not there."""
    problems = []
    for path in scanned_files(root):
        text = path.read_text(encoding="utf-8", errors="replace")
        where = lambda offset: f"{path.relative_to(root)}:{text.count(chr(10), 0, offset) + 1}"  # noqa: E731
        for m in OUTSIDE.finditer(text):
            problems.append(f"{where(m.start())}: cites '{m.group()}', a document outside the "
                            "repository; cite docs/design.md and a heading instead")
        for m in DOC.finditer(text):
            doc = root / "docs" / m.group(1)
            if not doc.is_file():
                problems.append(f"{where(m.start())}: cites docs/{m.group(1)}, which does not "
                                "exist")
                continue
            cited = HEADINGS.match(text, m.end())
            missing = set(QUOTED.findall(cited.group(1))) - headings(doc) if cited else set()
            problems += [f"{where(m.start())}: cites heading \"{h}\", which docs/{m.group(1)} "
                         "does not have" for h in sorted(missing)]
        if path.suffix == ".md":
            for m in LINK.finditer(text):
                target = m.group(1).split("#")[0]
                if target and not re.match(r"[a-z]+:", target) and \
                        not (path.parent / target).exists():
                    problems.append(f"{where(m.start())}: links {target}, which does not exist")
    return problems


def test_every_cited_document_and_heading_exists():
    assert citation_problems(ROOT) == []


def test_the_design_document_is_linked_from_the_readme():
    assert "docs/design.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_a_missing_document_heading_or_outside_reference_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "design.md").write_text("# Title\n\n## Losses\n\n### Metrics\n")
    (tmp_path / "ivr_core").mkdir()
    doc = "docs/" + "design.md"
    (tmp_path / "ivr_core" / "good.py").write_text(
        f'"""The losses ({doc}, "Losses" and\n"Metrics")."""\n# see {doc}, "Losses"\n')
    assert citation_problems(tmp_path) == []

    (tmp_path / "ivr_core" / "bad.py").write_text(
        f'"""({doc}, "Losses" and "Attention"); see {"docs/" + "gone.md"}.\n'
        f'The rules of {"DESIGN" + " §2"}."""\n')
    (tmp_path / "docs" / "other.md").write_text("See [the design](design.md), [x](missing.md).\n")
    problems = citation_problems(tmp_path)
    expected = [("ivr_core/bad.py:2:", "outside the repository"),
                ("ivr_core/bad.py:1:", 'heading "Attention"'),
                ("ivr_core/bad.py:1:", "gone.md, which does not exist"),
                ("docs" + "/other.md:1:", "links missing.md")]
    assert len(problems) == len(expected), problems
    for where, what in expected:
        assert any(p.startswith(where) and what in p for p in problems), (where, what, problems)
