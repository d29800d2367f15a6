"""Progress bars that appear only where they can be drawn.

tqdm redraws a bar in place with carriage returns and, for nested bars, cursor-up
escapes (``ESC [A``). On a terminal that is a bar; in a file (``> train.log``, a
cluster job's output, a CI log) it is a stream of ``[A`` fragments. So
``trainer.progress=true`` (the default) draws bars only when stderr is a terminal or
the code runs in a Jupyter notebook (whose bars are widgets); ``false`` never draws
them. The training loop logs one line per epoch either way.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, Any

from tqdm.auto import tqdm

__all__ = ["bars_enabled", "can_draw", "progress_bar"]


def can_draw(stream: IO[str] | None = None) -> bool:
    """Whether bars on ``stream`` (default ``sys.stderr``, tqdm's stream) show as bars:
    it is a terminal, or ``tqdm.auto`` picked Jupyter's widget bars."""
    if any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__):
        return True
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def bars_enabled(progress: bool = True, stream: IO[str] | None = None) -> bool:
    """Whether to draw progress bars: when asked (``trainer.progress``) and
    :func:`can_draw` says they would show as bars on ``stream``.

    Example:
        >>> import io
        >>> bars_enabled(True, io.StringIO())  # a file, not a terminal
        False
    """
    return bool(progress) and can_draw(stream)


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool, **kwargs: Any) -> tqdm:
    """A tqdm bar over ``iterable`` that is drawn only when ``enabled`` (see
    :func:`bars_enabled`); a disabled bar still iterates, and its ``update`` and
    ``set_postfix`` do nothing, so callers need no second code path.

    Defaults, each overridable through ``kwargs``: ``leave=False`` (a finished inner
    bar disappears) and ``dynamic_ncols=True`` (the bar follows the terminal width).
    """
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=not enabled, **kwargs)
