"""GET /metrics: Prometheus text from a per-app registry; requests by route template and
status, embedded items, batch sizes, queue depth, cache counters, SQL statements by kind."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pixql.server.metrics import statement_kind
from tests.conftest import make_image_folder

KEY = "metrics-key"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of a /metrics body."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def metrics_server(start_server: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    import pixql

    root = tmp_path_factory.mktemp("metrics") / "ws"
    make_image_folder(root / "shapes", per_class=2)
    ws = pixql.connect(root, progress=False, confined=True)
    return start_server(workspace=ws, enable_sql=True)[0]


def test_requests_are_counted_by_route_template_and_status(metrics_server):
    with httpx.Client(base_url=metrics_server, timeout=30) as c:
        c.get("/healthz")
        c.get("/ui/image", params={"path": "no/such.png"})
        c.get("/no/such/route")
        text = c.get("/metrics").text
    assert value(text, "pixql_http_requests_total", method="GET", route="/healthz",
                 status="200") >= 1
    assert value(text, "pixql_http_requests_total", method="GET", route="/ui/image",
                 status="404") == 1
    assert value(text, "pixql_http_requests_total", method="GET", route="unmatched",
                 status="404") == 1
    assert value(text, "pixql_http_request_duration_seconds_count", method="GET",
                 route="/healthz", status="200") >= 1


def test_embedding_batches_and_cache(metrics_server):
    with httpx.Client(base_url=metrics_server, timeout=60) as c:
        for _ in range(2):  # the second time from the cache
            r = c.post("/clip/embed_text", json={"text": ["a cat", "a dog", "a bird"]})
            assert r.status_code == 200, r.text
        text = c.get("/metrics").text
    assert value(text, "pixql_embedded_items_total", model="clip/ViT-B-32",
                 modality="text") == 6
    assert value(text, "pixql_embedding_cache_hits_total") == 3
    assert value(text, "pixql_embedding_cache_misses_total") == 3
    assert value(text, "pixql_embedding_cache_entries") == 3
    assert value(text, "pixql_batch_size_sum", model="clip/ViT-B-32", modality="text") == 3
    assert ("pixql_batch_queue_items", (("modality", "text"), ("model", "clip/ViT-B-32"))) \
        in samples(text)


def test_sql_statements_by_kind(metrics_server):
    with httpx.Client(base_url=metrics_server, timeout=60) as c:
        r = c.post("/sql", json={"query": "COPY images OPTIONS (if_exists='replace') FROM "
                                          "'shapes/'; SELECT 1; select 2; LIST MODEL"})
        assert r.status_code == 200, r.text
        text = c.get("/metrics").text
    assert value(text, "pixql_sql_statements_total", kind="copy") == 1
    assert value(text, "pixql_sql_statements_total", kind="select") == 2
    assert value(text, "pixql_sql_statements_total", kind="list") == 1


def test_metrics_need_a_key_when_keys_are_configured(start_server):
    base = start_server(api_keys=[KEY])[0]
    assert httpx.get(f"{base}/metrics", timeout=30).status_code == 401
    r = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")


def test_each_app_has_its_own_registry(start_server):
    first, second = start_server()[0], start_server()[0]  # each answered one /healthz
    for _ in range(3):
        httpx.get(f"{first}/healthz", timeout=30)
    counts = [value(httpx.get(f"{base}/metrics", timeout=30).text, "pixql_http_requests_total",
                    method="GET", route="/healthz", status="200") for base in (first, second)]
    assert counts == [4, 1]


@pytest.mark.parametrize(("text", "kind"), [
    ("BUILD MODEL m USING Pixels AS SELECT 1", "build"),
    ("  -- a comment\n  search image using m as select 1", "search"),
    ("(SELECT 1)", "select"),
    ("/* c */ CONVERT USING m AS SELECT 1", "convert"),
    ("VACUUM", "other"),
    ("", "other"),
])
def test_statement_kind(text, kind):
    assert statement_kind(text) == kind
