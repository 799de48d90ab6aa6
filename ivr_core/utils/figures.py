"""Matplotlib text as given: run folders, class names and titles come from users' files,
and matplotlib would read ``$\\foo$`` in any of them as mathtext and fail to parse it."""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


def literal_text(draw: F) -> F:
    """Decorator: every text the figure function ``draw`` creates is drawn literally
    (matplotlib decides when a text is created, so the setting covers the whole call)."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        from matplotlib import rc_context  # imported when a figure is drawn, not before

        with rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
