"""One Ray Data pipeline per CONVERT statement: every chunk through one actor pool.

The driver reads the whole work list first (:func:`send`): each chunk's values to embed go
into Ray's object store as Arrow blocks of ``{"i": position in the statement, "v": what
the worker reads}``, and the chunk itself (its keys, rows, file signatures, the reasons of
values that failed here) as one object, so the driver keeps only references. One Dataset
over all the blocks runs through one pool of :class:`~.worker.EmbedActor` (the model is
loaded once per actor for the whole statement, not once per chunk), with
``preserve_order`` so results come back in chunk order; :class:`Assembly` puts each row
back by its position and hands a chunk to the caller as soon as all its rows are back —
the caller commits it while the actors go on with the next ones. A statement interrupted
loses only the chunks not yet handed back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pixql.errors import ExecutionError
from pixql.execution.embedding import Embedded, bad_values_error

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pixql.execution.compute import Chunk


@dataclass
class Sent:
    """A chunk in the object store: ``meta`` is ``(chunk, positions, failed)`` —
    ``positions[j]`` the chunk index of the statement's row ``start + j``, ``failed`` the
    reasons of the values that failed on the driver."""

    start: int
    n: int  # rows sent to the workers
    meta: Any  # ObjectRef


@dataclass
class Partial:
    """A chunk whose rows are coming back."""

    chunk: Chunk
    positions: np.ndarray  # int64: the chunk index of each row sent, in sending order
    vectors: np.ndarray
    valid: np.ndarray
    reasons: dict[int, str]
    got: int = 0


def first_bad_batch(reasons: dict[int, str], batch_size: int) -> list[str]:
    """The reasons a local CONVERT names under on_error='fail': it stops at the first batch
    of ``batch_size`` values holding a bad one, naming that batch's bad values."""
    first = min(reasons) // batch_size
    return [reasons[i] for i in sorted(reasons) if i // batch_size == first]


def blocks_of(start: int, todo: list[tuple[int, Any]], per_block: int) -> list[pa.Table]:
    """``todo``'s values as Arrow blocks of about ``per_block`` rows, by statement position."""
    out = []
    for b in range(0, len(todo), per_block):
        part = todo[b:b + per_block]
        out.append(pa.table({"i": pa.array(range(start + b, start + b + len(part)), pa.int64()),
                             "v": pa.array([v for _, v in part])}))
    return out


@dataclass
class Assembly:
    """Rows coming back from the pool, put back into their chunks (module docstring)."""

    ray: Any
    sent: list[Sent]
    dim: int
    on_error: str
    batch_size: int
    open: dict[int, Partial] = field(default_factory=dict)
    next: int = 0  # the next chunk to hand back
    starts: np.ndarray = field(init=False)  # each chunk's first statement position

    def __post_init__(self) -> None:
        self.starts = np.array([s.start for s in self.sent], dtype=np.int64)

    def partial(self, c: int) -> Partial:
        if c not in self.open:
            chunk, positions, failed = self.ray.get(self.sent[c].meta)
            n = len(chunk.keys)
            self.open[c] = Partial(chunk, np.asarray(positions, dtype=np.int64),
                                   np.zeros((n, self.dim), np.float32),
                                   np.zeros(n, dtype=bool), dict(failed))
        return self.open[c]

    def add(self, batch: dict[str, np.ndarray]) -> None:
        """One batch of results: ``i`` (statement positions), ``vec``, ``ok``, ``err``."""
        i = np.asarray(batch["i"], dtype=np.int64)
        ok = np.asarray(batch["ok"], dtype=bool)
        # the chunk of each row: the last one starting at or before it (one that sent no
        # rows starts where the next one does)
        of = np.searchsorted(self.starts, i, side="right") - 1
        for c in np.unique(of).tolist():
            rows = np.flatnonzero(of == c)
            part = self.partial(c)
            k = part.positions[i[rows] - self.sent[c].start]
            part.vectors[k] = batch["vec"][rows]
            part.valid[k] = ok[rows]
            bad = ~ok[rows]
            for row, kb in zip(rows[bad].tolist(), k[bad].tolist(), strict=True):
                part.reasons[kb] = str(batch["err"][row])
            part.got += len(rows)

    def ready(self) -> Iterator[tuple[Chunk, Embedded]]:
        """The chunks, in order, whose rows are all back (ImageError: a bad value under
        on_error='fail')."""
        while self.next < len(self.sent):
            c = self.next
            part = self.partial(c)
            if part.got < self.sent[c].n:
                return
            del self.open[c]
            self.next += 1
            if part.reasons and self.on_error == "fail":
                raise bad_values_error(first_bad_batch(part.reasons, self.batch_size))
            yield part.chunk, Embedded(part.vectors, part.valid,
                                       [part.reasons[i] for i in sorted(part.reasons)])

    def values_in_flight(self) -> list[Any]:
        """The values sent of the first chunk not handed back (for an error message)."""
        part = self.partial(min(self.next, len(self.sent) - 1))
        return [part.chunk.keys[k] for k in part.positions.tolist()]

    def check_done(self) -> None:
        if self.next < len(self.sent):  # pragma: no cover - Ray Data returns each row once
            got = sum(p.got for p in self.open.values())
            raise ExecutionError(f"Ray returned {got} of the rows of chunk {self.next + 1}. "
                                 "Nothing was changed.")
