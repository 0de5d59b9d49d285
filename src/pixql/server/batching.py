"""Dynamic micro-batching of concurrent requests (the service using it: ``service.py``).

Each request decodes and preprocesses its own items in its own thread (in parallel), then
hands the preprocessed items to the :class:`MicroBatcher` of its (model, modality). The
batcher's worker thread takes up to ``max_batch`` items from the queue — waiting at most
``batch_wait_ms`` after the first one, and only while other requests are still preparing
items — runs **one** forward pass, and gives every request its own rows through a future.
Forward passes of one model (both modalities) are serialised by a per-model lock, so
concurrent requests never oversubscribe the cores with parallel forwards, and the worker
threads run torch with ``torch_threads`` intra-op threads.

Failures stay with their request: decoding and preprocessing errors are raised in the
request's own thread before anything is queued; when a batched forward fails, each
request of the batch is retried alone, so only the request(s) whose items fail get the
exception.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

#: batched forward: preprocessed items → raw float32 rows ``(len(items), dim)``
Forward = Callable[[list[Any]], np.ndarray]


class BatcherClosed(RuntimeError):
    """The batcher was closed (shutdown, model removed): run the forward directly."""


class BatcherStats(BaseModel):
    """Counters of one (model, modality) batcher."""

    model: str = Field(description="model id and weights, 'clip/<version>@<weights>'")
    modality: str
    requests: int = Field(description="submissions (a request's items, up to max_batch)")
    items: int = Field(description="items embedded")
    forwards: int = Field(description="forward passes run (retries of failed batches too)")
    failed_forwards: int = Field(description="forward passes that raised")
    largest_batch: int = Field(description="most items in one forward pass")
    mean_batch: float = Field(description="items per forward pass")


@dataclass(eq=False)
class _Job:
    items: list[Any]
    future: Future[np.ndarray]


class Ticket:
    """A request announced to a batcher (see :meth:`MicroBatcher.incoming`)."""

    def __init__(self, batcher: MicroBatcher) -> None:
        self._batcher = batcher
        self.submitted = False

    def submit(self, items: Sequence[Any]) -> list[Future[np.ndarray]]:
        """Queue the request's preprocessed items (once); futures of their rows, in order."""
        return self._batcher.submit(items, ticket=self)


class MicroBatcher:
    """One queue and one worker thread that batches forward passes.

    Args:
        forward: runs the model on a list of preprocessed items.
        max_batch: most items per forward (a submission is split into chunks this big;
            chunks are never split further, nor merged past this size).
        wait_s: longest wait for more items after the first of a batch.
        lock: held around every forward (share it to serialise several batchers).
        on_start: called first in the worker thread (e.g. to set torch's threads).
        name: the worker thread's name.
        on_batch: called with the size of every successful forward (metrics).
    """

    def __init__(self, forward: Forward, *, max_batch: int = 32, wait_s: float = 0.003,
                 lock: threading.Lock | None = None,
                 on_start: Callable[[], None] | None = None,
                 name: str = "pixql-batcher",
                 on_batch: Callable[[int], None] | None = None) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.forward, self.max_batch, self.wait_s = forward, int(max_batch), float(wait_s)
        self._forward_lock = lock or threading.Lock()
        self._on_start = on_start
        self._on_batch = on_batch
        self._cond = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._incoming = 0
        self._closed = False
        self.requests = self.items = self.forwards = self.failed_forwards = 0
        self.largest_batch = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ client side
    @contextmanager
    def incoming(self) -> Iterator[Ticket]:
        """Announce a request that is still preparing its items.

        While some request is announced, the worker may wait (up to ``wait_s``) for its
        items to join the batch; with none announced it runs what it has at once.
        """
        ticket = Ticket(self)
        with self._cond:
            self._incoming += 1
        try:
            yield ticket
        finally:
            if not ticket.submitted:
                self._withdraw(ticket)

    def _withdraw(self, ticket: Ticket) -> None:
        with self._cond:
            ticket.submitted = True
            self._incoming -= 1
            self._cond.notify_all()

    def submit(self, items: Sequence[Any], *, ticket: Ticket | None = None
               ) -> list[Future[np.ndarray]]:
        """Queue ``items``; one future per chunk of ``max_batch``.

        Raises:
            BatcherClosed: after :meth:`close` (the items are not queued).
        """
        items = list(items)
        jobs = [_Job(items[i:i + self.max_batch], Future())
                for i in range(0, len(items), self.max_batch)]
        with self._cond:
            if ticket is not None and not ticket.submitted:
                ticket.submitted = True
                self._incoming -= 1
            if self._closed:
                self._cond.notify_all()
                raise BatcherClosed("the batcher is closed")
            self._queue.extend(jobs)
            self.requests += len(jobs)
            self._cond.notify_all()
        return [job.future for job in jobs]

    def queued(self) -> int:
        """Items waiting for a forward pass."""
        with self._cond:
            return sum(len(job.items) for job in self._queue)

    def run(self, items: Sequence[Any]) -> np.ndarray:
        """Submit ``items`` and wait for their rows."""
        return gather(self.submit(items))

    def close(self, timeout: float = 30.0) -> None:
        """Run what is queued, then stop the worker (later submissions: BatcherClosed)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ worker side
    def _loop(self) -> None:
        if self._on_start is not None:
            try:
                self._on_start()
            except Exception:
                log.exception("batch worker start-up hook failed")
        while (jobs := self._collect()) is not None:
            self._run(jobs)

    def _collect(self) -> list[_Job] | None:
        """The next batch: whole jobs, at most ``max_batch`` items (None: closed, empty)."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            jobs = [self._queue.popleft()]
            size = len(jobs[0].items)
            deadline = time.monotonic() + self.wait_s
            while size < self.max_batch:
                if self._queue:
                    if size + len(self._queue[0].items) > self.max_batch:
                        break
                    jobs.append(self._queue.popleft())
                    size += len(jobs[-1].items)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._incoming <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            return jobs

    def _run(self, jobs: list[_Job]) -> None:
        """One forward for ``jobs``; on failure retry each job alone (failures stay put)."""
        try:
            rows = self._call([item for job in jobs for item in job.items])
        except Exception as e:  # noqa: BLE001 - handed to the waiting requests
            if len(jobs) == 1:
                jobs[0].future.set_exception(e)
            else:
                for job in jobs:
                    self._run([job])
            return
        offset = 0
        for job in jobs:
            job.future.set_result(rows[offset:offset + len(job.items)])
            offset += len(job.items)

    def _call(self, items: list[Any]) -> np.ndarray:
        with self._forward_lock:
            self.forwards += 1
            self.largest_batch = max(self.largest_batch, len(items))
            try:
                rows = np.asarray(self.forward(items), dtype=np.float32)
                if rows.ndim != 2 or rows.shape[0] != len(items):
                    raise RuntimeError(f"the forward pass returned shape {rows.shape} for "
                                       f"{len(items)} items")
            except Exception:
                self.failed_forwards += 1
                raise
            self.items += len(items)
        if self._on_batch is not None:
            self._on_batch(len(items))
        return rows


def gather(futures: Sequence[Future[np.ndarray]]) -> np.ndarray:
    """The rows of several futures, concatenated (re-raises the first failure)."""
    if not futures:
        raise ValueError("nothing was submitted: no rows to gather")
    parts = [f.result() for f in futures]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
