"""pixql.images.map_ordered: order, chunking and errors, whatever the thread count."""

from __future__ import annotations

import threading

import pytest

from pixql.images import map_ordered


@pytest.mark.parametrize("workers", [0, 1, 2, 3, 8])
@pytest.mark.parametrize(("n", "chunk"), [(0, 4), (1, 4), (10, 3), (64, 16), (7, 100)])
def test_results_come_in_order_chunk_by_chunk(workers: int, n: int, chunk: int) -> None:
    items = list(range(n))
    chunks = list(map_ordered(lambda x: x * x, items, workers=workers, chunk=chunk))
    assert [len(c) for c in chunks] == [min(chunk, n - i) for i in range(0, n, chunk)]
    assert [y for c in chunks for y in c] == [x * x for x in items]


def test_work_is_shared_by_the_threads_in_slices() -> None:
    seen: set[str] = set()
    both_slices_running = threading.Barrier(2, timeout=30)  # no timing luck: a rendezvous

    def slow(x: int) -> int:
        seen.add(threading.current_thread().name)
        if x in (0, 10):  # the first item of each slice of the first chunk
            both_slices_running.wait()
        return x

    out = [y for c in map_ordered(slow, list(range(40)), workers=2, chunk=20) for y in c]
    assert out == list(range(40))
    assert len(seen) == 2
    assert all(name.startswith("pixql-decode") for name in seen)


def test_an_exception_reaches_the_caller() -> None:
    def boom(x: int) -> int:
        if x == 5:
            raise ValueError("item 5 is bad")
        return x

    with pytest.raises(ValueError, match="item 5 is bad"):
        for _ in map_ordered(boom, list(range(10)), workers=2, chunk=4):
            pass
