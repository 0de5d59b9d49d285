"""What the ANN indexes use of SEARCH's cached vectors, as :class:`typing.Protocol` types.

``pixql.index`` sits *below* ``pixql.execution`` in the import layers (SEARCH calls the
indexes), so :mod:`pixql.index.ann` must not import :mod:`pixql.execution.vectors`. It types
its arguments with these protocols instead, which ``TableRef`` and ``ColumnVectors`` there
satisfy structurally (mypy checks it where SEARCH passes them in).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from contextlib import AbstractContextManager

    import numpy as np


class IndexedTable(Protocol):
    """The table a cached column belongs to."""

    @property
    def key(self) -> str:
        """``schema.table``, lower-case: names the table's folder under ``indexes/``."""


class IndexedVectors(Protocol):
    """A column's vectors as unit rows, with room for the indexes built over them."""

    @property
    def units(self) -> np.ndarray:
        """``(n, d)`` float32 unit rows (zeros where not ``valid``)."""

    @property
    def rowids(self) -> np.ndarray:
        """``(n,)`` int64 row ids of the rows of ``units``, ascending."""

    @property
    def valid(self) -> np.ndarray:
        """``(n,)`` bool: the stored vector is not NULL."""

    @property
    def n_valid(self) -> int:
        """How many rows are valid."""

    @property
    def indexes(self) -> dict[str, Any]:
        """Index kind → the index built over ``units`` (filled by :mod:`pixql.index.ann`)."""

    @property
    def lock(self) -> AbstractContextManager[Any]:
        """Held while an index is looked up or built."""

    def checksum(self) -> str:
        """A content hash of the vectors; saved index files are tied to it."""
