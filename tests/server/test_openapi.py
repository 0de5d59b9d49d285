"""The OpenAPI document lists Roboflow's routes and field names."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import httpx


@pytest.fixture(scope="module")
def spec(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def props(spec: dict[str, Any], name: str) -> list[str]:
    return list(spec["components"]["schemas"][name]["properties"])


def test_clip_routes_are_documented(spec: dict[str, Any]) -> None:
    for route, request in [("/clip/embed_image", "ClipImageEmbeddingRequest"),
                           ("/clip/embed_text", "ClipTextEmbeddingRequest"),
                           ("/clip/compare", "ClipCompareRequest")]:
        post = spec["paths"][route]["post"]
        body = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert body.endswith(f"/{request}")
        assert {"200", "400", "413", "422"} <= set(post["responses"])
        assert "api_key" in [p["name"] for p in post["parameters"]]


def test_request_field_names(spec: dict[str, Any]) -> None:
    common = ["id", "api_key", "usage_billable", "start", "source", "source_info",
              "disable_model_monitoring", "clip_version_id", "model_id"]
    assert props(spec, "ClipImageEmbeddingRequest") == [*common, "image", "normalize"]
    assert props(spec, "ClipTextEmbeddingRequest") == [*common, "text", "normalize", "truncate"]
    assert props(spec, "ClipCompareRequest") == [*common, "subject", "subject_type", "prompt",
                                                 "prompt_type", "truncate"]
    assert props(spec, "ImageInput") == ["type", "value"]


def test_response_field_names_in_roboflow_order(spec: dict[str, Any]) -> None:
    assert props(spec, "ClipEmbeddingResponse") == ["inference_id", "frame_id", "time",
                                                    "embeddings"]
    assert props(spec, "ClipCompareResponse") == ["inference_id", "frame_id", "time",
                                                  "similarity", "parent_id"]
    assert props(spec, "ModelsDescriptions")[0] == "models"


def test_other_routes_are_documented(spec: dict[str, Any]) -> None:
    assert {"/info", "/healthz", "/readiness", "/model/registry", "/model/add",
            "/model/remove", "/model/clear"} <= set(spec["paths"])
    assert spec["info"]["title"] == "pixql"


@pytest.mark.parametrize(("page", "assets"), [
    ("/docs", {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
               "favicon.png": "image/png"}),
    ("/redoc", {"redoc.standalone.js": "text/javascript", "favicon.png": "image/png"}),
])
def test_docs_pages_load_everything_from_this_server(client: httpx.Client, page: str,
                                                     assets: dict[str, str]) -> None:
    """Offline, the docs still work: every script, style sheet and icon the page names is
    a path on this server, and each one is there."""
    r = client.get(page)
    assert r.status_code == 200
    assert "/openapi.json" in r.text
    urls = set(re.findall(r"""(?:src|href|url)\s*[=:(]\s*['"]([^'"]+)['"]""", r.text))
    assert {f"/docs/assets/{name}" for name in assets} <= urls
    assert not re.search(r"https?://(?!127\.0\.0\.1|localhost)", r.text), r.text
    for name, media_type in assets.items():
        got = client.get(f"/docs/assets/{name}")
        assert got.status_code == 200, name
        assert got.headers["content-type"].startswith(media_type)
        assert len(got.content) > 100
    assert client.get("/docs/assets/evil.js").status_code == 404


def test_swagger_ui_asks_no_outside_validator(client: httpx.Client) -> None:
    assert '"validatorUrl": null' in client.get("/docs").text
