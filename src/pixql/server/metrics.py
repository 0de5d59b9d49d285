"""Prometheus metrics: ``GET /metrics`` in the text exposition format.

Each app has its own :class:`Metrics` (its own ``CollectorRegistry``: several apps in one
process never share or collide), on ``app.state.metrics``. ``/metrics`` is protected like
every other route when API keys are configured.

=====================================  =========  ==============================================
metric                                 type       labels
=====================================  =========  ==============================================
``pixql_http_requests_total``          counter    ``method``, ``route`` (the route template,
                                                  e.g. ``/ui/image``; ``unmatched`` for 404s),
                                                  ``status``
``pixql_http_request_duration_seconds`` histogram ``method``, ``route``, ``status``
``pixql_embedded_items_total``         counter    ``model`` (e.g. ``clip/ViT-B-32``),
                                                  ``modality`` (``image``, ``text``): items the
                                                  CLIP routes embedded (cache hits included)
``pixql_batch_size``                   histogram  ``model``, ``modality``: items per batched
                                                  forward pass
``pixql_batch_queue_items``            gauge      ``model``, ``modality``: items waiting for a
                                                  forward pass
``pixql_embedding_cache_hits_total``   counter    (none); ``..._misses_total``,
                                                  ``..._evictions_total``, and the gauge
                                                  ``pixql_embedding_cache_entries``
``pixql_sql_statements_total``         counter    ``kind``: the statement's first keyword
                                                  (``select``, ``build``, ``convert``,
                                                  ``search``...; ``other`` for the rest)
=====================================  =========  ==============================================

Examples:
    >>> from pixql.server.app import create_app
    >>> app = create_app()
    >>> "pixql_http_requests_total" in app.state.metrics.render().decode()
    True
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pixql.errors import MissingDependencyError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from fastapi import FastAPI
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

router = APIRouter(tags=["metrics"])

#: statement kinds counted by name (the first keyword); anything else is ``other``
STATEMENT_KINDS = frozenset({
    "select", "with", "from", "values", "insert", "update", "delete", "create", "drop",
    "alter", "copy", "build", "convert", "search", "print", "list", "get", "set", "show",
    "describe", "explain", "pragma", "begin", "commit", "rollback", "attach", "detach",
    "export", "import", "checkpoint", "load", "install", "summarize", "call"})
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_FIRST_WORD = re.compile(r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*\(?\s*([A-Za-z]+)", re.S)


def statement_kind(text: str) -> str:
    """``'BUILD MODEL m ...'`` → ``'build'``; unknown first words → ``'other'``."""
    found = _FIRST_WORD.match(text or "")
    word = found.group(1).lower() if found else ""
    return word if word in STATEMENT_KINDS else "other"


def model_label(key: str) -> str:
    """``'clip/ViT-B-32@/path/to/weights'`` → ``'clip/ViT-B-32'`` (no paths in labels)."""
    return key.split("@", 1)[0]


class Metrics:
    """The metrics of one app (its own registry)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("pixql_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("pixql_http_request_duration_seconds",
                                 "Time to answer an HTTP request",
                                 ["method", "route", "status"], registry=r)
        self.items = Counter("pixql_embedded_items", "Items embedded by the CLIP routes",
                             ["model", "modality"], registry=r)
        self.batch_size = Histogram("pixql_batch_size", "Items per batched forward pass",
                                    ["model", "modality"], buckets=BATCH_BUCKETS, registry=r)
        self.statements = Counter("pixql_sql_statements", "SQL statements run over HTTP",
                                  ["kind"], registry=r)
        self.service: Any = None

    # -- hooks ------------------------------------------------------------------------------
    def embedded(self, model: str, modality: str, count: int) -> None:
        self.items.labels(model_label(model), modality).inc(count)

    def batch(self, model: str, modality: str, size: int) -> None:
        self.batch_size.labels(model_label(model), modality).observe(size)

    def count_statements(self, statements: Iterable[str]) -> None:
        for text in statements:
            self.statements.labels(statement_kind(text)).inc()

    def watch(self, service: Any) -> None:
        """Read queue depths and cache counters of ``service`` at each scrape."""
        self.service = service
        service.metrics = self
        self.registry.register(_ServiceCollector(service))

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _ServiceCollector:
    """Collects, at scrape time, what the embedding service already counts."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        queue = GaugeMetricFamily("pixql_batch_queue_items",
                                  "Items waiting for a batched forward pass",
                                  labels=["model", "modality"])
        for key, modality, batcher in self.service.batchers():
            queue.add_metric([model_label(key), modality], batcher.queued())
        yield queue
        stats = self.service.cache.stats()
        for name, value in (("hits", stats.hits), ("misses", stats.misses),
                            ("evictions", stats.evictions)):
            yield CounterMetricFamily(f"pixql_embedding_cache_{name}",
                                      f"Embedding cache {name}", value=value)
        yield GaugeMetricFamily("pixql_embedding_cache_entries",
                                "Embeddings in the cache", value=stats.entries)


class MetricsMiddleware:
    """Count every HTTP request and time it, by route template and status."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route, str(status)).observe(
                time.perf_counter() - started)


@router.get("/metrics", summary="Prometheus metrics (text exposition format)",
            response_class=Response)
def metrics(request: Request) -> Response:
    """The server's metrics for Prometheus."""
    from prometheus_client import CONTENT_TYPE_LATEST

    found: Metrics | None = getattr(request.app.state, "metrics", None)
    if found is None:
        raise MissingDependencyError(
            "metrics need prometheus-client: pip install 'pixql[server]'")
    return Response(found.render(), media_type=CONTENT_TYPE_LATEST)


def install_metrics(app: FastAPI) -> None:
    """Give ``app`` its metrics (``app.state.metrics``), ``GET /metrics`` and the request
    middleware; without prometheus-client, ``/metrics`` answers 501 naming the extra."""
    app.include_router(router)
    try:
        found = Metrics()
    except ImportError:
        app.state.metrics = None
        return
    app.state.metrics = found
    found.watch(app.state.models.service)
    app.add_middleware(MetricsMiddleware, metrics=found)
