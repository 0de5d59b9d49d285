"""Micro-batching: the batcher on its own, then concurrent requests against live servers."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from pixql.errors import ModelError
from pixql.server.batching import BatcherClosed, MicroBatcher
from pixql.server.service import EmbeddingService
from pixql.server.settings import ServerSettings
from tests.server.conftest import TXT, b64_image, png_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

TEXTS = [f"{TXT} number {i}" for i in range(12)] + ["a cat", "a much longer text " * 5]


def rows_of(items: Sequence[Any]) -> np.ndarray:
    """A fake forward: item ``x`` → row ``[x, 2x]``."""
    return np.array([[float(x), 2.0 * float(x)] for x in items], dtype=np.float32)


def slow(forward: Callable[[list[Any]], np.ndarray], seconds: float = 0.05
         ) -> Callable[[list[Any]], np.ndarray]:
    def run(items: list[Any]) -> np.ndarray:
        time.sleep(seconds)
        return forward(items)
    return run


def concurrently(fn: Callable[[Any], Any], args: Sequence[Any]) -> list[Any]:
    """``fn`` over ``args`` from one thread each, released together; results in order."""
    barrier = threading.Barrier(len(args))

    def call(arg: Any) -> Any:
        barrier.wait()
        return fn(arg)

    with ThreadPoolExecutor(len(args)) as pool:
        return list(pool.map(call, args))


# ---------------------------------------------------------------------- the batcher alone
def test_concurrent_submissions_share_forwards() -> None:
    batcher = MicroBatcher(slow(rows_of), max_batch=8, wait_s=0.01)
    try:
        out = concurrently(lambda x: batcher.run([x]), list(range(20)))
    finally:
        batcher.close()
    for x, rows in enumerate(out):
        np.testing.assert_array_equal(rows, rows_of([x]))
    assert batcher.requests == 20
    assert batcher.items == 20
    assert batcher.forwards < 20
    assert batcher.largest_batch <= 8


def test_large_submission_is_split_and_reassembled_in_order() -> None:
    batcher = MicroBatcher(rows_of, max_batch=4, wait_s=0.0)
    try:
        np.testing.assert_array_equal(batcher.run(range(10)), rows_of(range(10)))
    finally:
        batcher.close()
    assert batcher.requests == 3
    assert batcher.largest_batch <= 4


def test_worker_waits_for_announced_requests_only() -> None:
    batcher = MicroBatcher(rows_of, max_batch=8, wait_s=5.0)
    try:
        # nobody else announced: the lone item runs at once, not after 5 s
        np.testing.assert_array_equal(batcher.submit([1])[0].result(timeout=3), rows_of([1]))
        with batcher.incoming() as ticket:  # announced: the next batch waits for it
            first = batcher.submit([2])
            time.sleep(0.1)
            second = ticket.submit([3, 4])
        assert first[0].result(timeout=3).tolist() == rows_of([2]).tolist()
        assert second[0].result(timeout=3).tolist() == rows_of([3, 4]).tolist()
    finally:
        batcher.close()
    assert batcher.forwards == 2
    assert batcher.largest_batch == 3


def test_a_failing_item_fails_only_its_own_request() -> None:
    def forward(items: list[Any]) -> np.ndarray:
        time.sleep(0.02)
        if "bad" in items:
            raise ValueError("bad item")
        return rows_of(items)

    batcher = MicroBatcher(forward, max_batch=16, wait_s=0.01)

    def call(x: Any) -> Any:
        try:
            return batcher.run([x])
        except ValueError as e:
            return e

    try:
        out = concurrently(call, [1, 2, "bad", 3, 4, 5])
    finally:
        batcher.close()
    assert isinstance(out[2], ValueError)
    assert str(out[2]) == "bad item"
    for i, x in enumerate([1, 2, None, 3, 4, 5]):
        if x is not None:
            np.testing.assert_array_equal(out[i], rows_of([x]))
    assert batcher.failed_forwards >= 1


def test_close_finishes_queued_work_then_refuses() -> None:
    batcher = MicroBatcher(slow(rows_of, 0.05), max_batch=1, wait_s=0.0)
    futures = [batcher.submit([i])[0] for i in range(3)]
    batcher.close()
    assert [f.result(timeout=0).tolist() for f in futures] == [rows_of([i]).tolist()
                                                               for i in range(3)]
    with pytest.raises(BatcherClosed):
        batcher.submit([9])


class FakeEmbedder:
    """Identity-ish embedder: text → [len, 1]; counts forwards."""

    model_id, source, dim = "fake", "memory", 2

    def __init__(self) -> None:
        self.forwards = 0

    def preprocess(self, item: Any, modality: str) -> Any:
        return item

    def forward(self, batch: Sequence[Any], modality: str) -> np.ndarray:
        self.forwards += 1
        return np.array([[len(t), 1.0] for t in batch], dtype=np.float32)

    def postprocess(self, output: Any, *, normalize: bool = True) -> np.ndarray:
        return np.asarray(output, dtype=np.float32)

    def embed(self, items: Sequence[Any], modality: str, *, normalize: bool = True
              ) -> np.ndarray:
        return self.postprocess(self.forward(list(items), modality))


def test_service_after_close_runs_unbatched() -> None:
    service = EmbeddingService(ServerSettings(embedding_cache_size=0))
    fake = FakeEmbedder()
    service.close()
    rows = service.embed(fake, [None, None], "text", lambda idx: [["ab", "abc"][i] for i in idx])
    assert rows.tolist() == [[2.0, 1.0], [3.0, 1.0]]
    assert fake.forwards == 1
    assert service.stats().batchers == []


class RowwiseFake(FakeEmbedder):
    """A model whose text forward runs row by row (like CLIP's onnx-int8 towers)."""

    def batches(self, modality: str) -> bool:
        return modality != "text"


def test_models_that_gain_nothing_from_batching_skip_the_batcher() -> None:
    service = EmbeddingService(ServerSettings(embedding_cache_size=0, batching=True))
    fake = RowwiseFake()
    texts = ["a", "bb", "ccc"]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda t: service.embed(fake, [None], "text", lambda _: [t]),
                            texts * 4))
    assert [r.tolist() for r in got] == [[[len(t), 1.0]] for t in texts * 4]
    assert service.stats().batchers == []  # straight to the model, concurrently
    service.embed(fake, [None], "image", lambda _: ["img"])
    assert [b.modality for b in service.stats().batchers] == ["image"]
    service.close()


# ---------------------------------------------------------------------- live servers
@pytest.fixture(scope="module")
def servers(start_server: Callable[..., tuple[str, Any]]) -> dict[str, str]:
    """Base URLs: batching on (long wait) and off, both without cache."""
    on, _ = start_server(batching=True, batch_wait_ms=50, max_batch=32,
                         embedding_cache_size=0, max_texts=64)
    off, _ = start_server(batching=False, embedding_cache_size=0, max_texts=64)
    return {"on": on, "off": off}


def post(base: str, route: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{base}/clip/{route}", json=body, timeout=60)


def embeddings(r: httpx.Response) -> np.ndarray:
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["embeddings"], dtype=np.float64)


def post_rows(base: str, route: str, body: dict[str, Any]) -> np.ndarray:
    return embeddings(post(base, route, body))


def stats(base: str) -> dict[str, Any]:
    r = httpx.get(f"{base}/stats", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def totals(base: str, modality: str) -> tuple[int, int]:
    """(requests, forwards) summed over the server's batchers of ``modality``."""
    rows = [b for b in stats(base)["batchers"] if b["modality"] == modality]
    return sum(b["requests"] for b in rows), sum(b["forwards"] for b in rows)


def test_batched_numbers_match_unbatched_and_direct(servers: dict[str, str],
                                                    embedder: Any) -> None:
    from pixql.images import decode_image

    imgs = [png_bytes((30 + 7 * i, 20 + 3 * i), (40 * i % 255, 90, 200)) for i in range(6)]
    bodies = {
        "embed_text": ([{"text": t} for t in TEXTS],
                       embedder.embed(TEXTS, "text", normalize=False)),
        "embed_image": ([{"image": b64_image(b), "normalize": True} for b in imgs],
                        embedder.embed([decode_image(b) for b in imgs], "image")),
    }
    for base in (servers["on"], servers["off"]):
        for route, (requests, expected) in bodies.items():
            got = concurrently(partial(post_rows, base, route), requests)
            np.testing.assert_allclose(np.vstack(got), expected, atol=1e-5, rtol=1e-5)


def test_concurrent_requests_are_batched(servers: dict[str, str], embedder: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    forward = embedder.forward
    monkeypatch.setattr(embedder, "forward", lambda b, m: (time.sleep(0.05), forward(b, m))[1])
    before = totals(servers["on"], "text")
    out = concurrently(lambda t: post(servers["on"], "embed_text", {"text": t}), TEXTS)
    assert all(r.status_code == 200 for r in out)
    requests, forwards = (a - b for a, b in zip(totals(servers["on"], "text"), before,
                                               strict=True))
    assert requests == len(TEXTS)
    assert forwards < requests
    assert max(b["largest_batch"] for b in stats(servers["on"])["batchers"]) > 1
    assert stats(servers["off"])["batchers"] == []  # batching off: no workers at all


def test_one_bad_request_does_not_break_its_batch(servers: dict[str, str], embedder: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    forward = embedder.forward

    def poisoned(batch: Sequence[Any], modality: str) -> Any:
        time.sleep(0.03)
        if any("POISON" in str(x) for x in batch):
            raise ModelError("poisoned text in the batch")
        return forward(batch, modality)

    monkeypatch.setattr(embedder, "forward", poisoned)
    texts = [*TEXTS[:5], "POISON", *TEXTS[5:9]]
    out = concurrently(lambda t: post(servers["on"], "embed_text", {"text": t}), texts)
    monkeypatch.setattr(embedder, "forward", forward)
    expected = embedder.embed([t for t in texts if t != "POISON"], "text", normalize=False)
    bad = out.pop(5)
    assert bad.status_code == 400
    assert "poisoned" in bad.json()["message"]
    assert sum(b["failed_forwards"] for b in stats(servers["on"])["batchers"]) >= 1
    np.testing.assert_allclose(np.vstack([embeddings(r) for r in out]), expected, atol=1e-5)


def test_a_broken_image_fails_alone(servers: dict[str, str]) -> None:
    good = b64_image(png_bytes())
    bodies = [{"image": good}] * 4 + [{"image": {"type": "base64", "value": "bm90IGFuIGltYWdl"}}]
    out = concurrently(lambda b: post(servers["on"], "embed_image", b), bodies)
    assert [r.status_code for r in out] == [200, 200, 200, 200, 400]
    assert "Could not load input image" in out[-1].json()["message"]
    rows = np.vstack([embeddings(r) for r in out[:4]])
    np.testing.assert_allclose(rows, np.repeat(rows[:1], 4, axis=0), atol=1e-6)


def test_shutdown_stops_the_batch_workers(server_env: Any) -> None:
    from pixql.server.app import create_app
    from tests.server.conftest import live_server

    app = create_app(ServerSettings.from_env(batching=True))
    with live_server(app) as base:
        assert post(base, "embed_text", {"text": "hello"}).status_code == 200
        threads = [b._thread for _, b in app.state.models.service._batchers.values()]
        assert threads
        assert all(t.is_alive() for t in threads)
    assert all(not t.is_alive() for t in threads)
    assert app.state.models.service.stats().batchers == []
