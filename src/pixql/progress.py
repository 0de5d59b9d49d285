"""Progress bars: tqdm's auto bar (terminal or notebook), silent when not interactive.

Bars show on stderr only when it is a terminal or in a notebook, and never when
``PIXQL_PROGRESS=0`` or ``CI`` is set. ``PIXQL_PROGRESS=1`` forces them on.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator


def progress_enabled(requested: bool = True) -> bool:
    """Whether a bar should be drawn now."""
    if not requested:
        return False
    env = os.environ.get("PIXQL_PROGRESS")
    if env is not None:
        return env.strip().lower() not in ("0", "false", "no", "off", "")
    if os.environ.get("CI"):
        return False
    if "ipykernel" in sys.modules:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        pass


@contextmanager
def progress_bar(*, total: int | None, desc: str, unit: str = "it",
                 enabled: bool = True) -> Iterator[Any]:
    """A tqdm bar (rate and ETA included) or a no-op stand-in."""
    if not progress_enabled(enabled):
        yield _NullBar()
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        yield _NullBar()
        return
    bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
               leave=False)
    try:
        yield bar
    finally:
        bar.close()
