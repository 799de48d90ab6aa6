"""A JSON array read one element at a time (Visual Genome's objects.json is about 1 GB):
only a window of the text is held, grown while one element does not fit."""

from __future__ import annotations

import io
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ivr_core.errors import IvrError
from ivr_core.utils.files import UnreadableFile, open_checked


@contextmanager
def _checked_text(path: Path) -> Iterator[io.TextIOWrapper]:
    """``path`` opened as UTF-8 text through ivr's checked reader (a regular file), or an
    IvrError naming it."""
    try:
        with open_checked(path, what="Visual Genome file") as raw, \
                io.TextIOWrapper(raw, encoding="utf-8-sig") as text:
            yield text
    except UnreadableFile as e:
        raise IvrError(f"cannot read {e.path}: {e.reason}") from None


def iter_json_array(path: str | os.PathLike, chunk: int = 1 << 20) -> Iterator[Any]:
    """The elements of the JSON array that file ``path`` holds, one at a time.

    Only a window of the text is held: ``chunk`` characters, grown (doubled) while one
    element does not fit. Elements are decoded by ``json.JSONDecoder.raw_decode``; a syntax
    error is an IvrError with its character offset."""
    path = Path(path)
    decoder = json.JSONDecoder()
    with _checked_text(path) as f:
        window = _Window(f, chunk, path)
        if window.skip_space() != "[":
            raise window.error("expected a JSON array ('[')")
        window.pos += 1
        if window.skip_space() == "]":
            window.pos += 1
        else:
            while True:
                yield window.decode(decoder)
                sep = window.skip_space()
                if sep not in (",", "]"):
                    raise window.error("expected ',' or ']' after an array element")
                window.pos += 1
                if sep == "]":
                    break
        if window.skip_space() != "":
            raise window.error("text after the end of the array")


class _Window:
    """A sliding window over a text file: ``text[pos:]`` is what is not consumed yet."""

    def __init__(self, f, chunk: int, path: Path):
        self.f, self.chunk, self.path = f, chunk, path
        self.text, self.pos, self.offset, self.eof = "", 0, 0, False

    def more(self, at_least: int = 0) -> bool:
        """Drop the consumed text and read at least ``max(chunk, at_least)`` more."""
        if self.eof:
            return False
        self.offset += self.pos
        self.text, self.pos = self.text[self.pos:], 0
        data = self.f.read(max(self.chunk, at_least))
        self.eof = not data
        self.text += data
        return bool(data)

    def skip_space(self) -> str:
        """The next non-white-space character ('' at the end of the file), not consumed."""
        while True:
            while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.text) or not self.more():
                return self.text[self.pos:self.pos + 1]

    def decode(self, decoder: json.JSONDecoder) -> Any:
        self.skip_space()  # raw_decode does not skip leading white space
        while True:
            try:
                value, end = decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as e:
                # an element cut by the window's end fails near that end (or, for a string,
                # where it starts); anything earlier is a real syntax error
                cut = e.pos >= len(self.text) - 64 or e.msg.startswith("Unterminated string")
                if not cut or not self.more(len(self.text)):
                    raise self.error(e.msg, self.offset + e.pos) from None
                continue
            tail = end
            while tail < len(self.text) and self.text[tail] in "0123456789.eE+-":
                tail += 1
            if tail == len(self.text) and self.more(len(self.text)):
                continue  # a number cut by the window's end ("1" of "12", "0" of "0.5")
            self.pos = end
            return value

    def error(self, message: str, at: int | None = None) -> IvrError:
        at = self.offset + self.pos if at is None else at
        return IvrError(f"{self.path} is not valid JSON: {message} at character {at}; is the "
                        "file complete (download it again)?")
