"""Error codes and messages: 422 schema errors, 400 bad images/inputs, 413 limits, 500."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import pytest

from tests.server.conftest import OPEN_SERVER, b64_image

if TYPE_CHECKING:
    from collections.abc import Iterator

    import httpx


def error(client: httpx.Client, route: str, body: Any, status: int) -> dict[str, Any]:
    r = client.post(route, json=body)
    assert r.status_code == status, r.text
    out = r.json()
    assert isinstance(out["message"], str)
    assert out["message"]
    return out


# ---------------------------------------------------------------------- 422 schema errors
@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/clip/embed_text", {}, "text"),
        ("/clip/embed_text", {"text": 5}, "text"),
        ("/clip/embed_text", {"text": ["ok", 5]}, "text[1]"),
        ("/clip/embed_image", {"image": "aGVsbG8="}, "image"),
        ("/clip/embed_image", {"image": [{"value": "x"}]}, "image[0].type"),
        ("/clip/compare", {"subject": "x", "prompt": 5}, "prompt"),
        ("/clip/compare", {"prompt": "x"}, "subject"),
    ],
)
def test_schema_errors_are_422_with_detail_and_a_readable_message(
    client: httpx.Client, route: str, body: Any, field: str
) -> None:
    out = error(client, route, body, 422)
    assert isinstance(out["detail"], list)
    assert out["detail"]
    assert all({"loc", "msg", "type"} <= set(d) for d in out["detail"])
    assert out["message"].startswith("Invalid request: ")
    assert f"{field}: " in out["message"]


@pytest.mark.parametrize("field", ["subject_type", "prompt_type"])
def test_bad_types_name_the_allowed_values(client: httpx.Client, field: str) -> None:
    body = {"subject": "a", "prompt": "b", field: "video"}
    out = error(client, "/clip/compare", body, 422)
    assert field in out["message"]
    assert "'image' or 'text'" in out["message"]


def test_malformed_json_is_422(client: httpx.Client) -> None:
    r = client.post("/clip/embed_text", content=b"{not json",
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert "JSON" in r.json()["message"]


# ---------------------------------------------------------------------- 400 bad images
@pytest.mark.parametrize(
    ("image", "cause"),
    [
        ({"type": "base64", "value": "!!!not base64!!!"}, "malformed base64"),
        ({"type": "base64", "value": base64.b64encode(b"plain text").decode()},
         "not a decodable image"),
        ({"type": "base64", "value": ""}, "empty image payload"),
        ({"type": "base64", "value": None}, "needs a string value"),
        ({"type": "numpy", "value": "gASVAAAA"}, "NumPy image type is not supported"),
        ({"type": "file", "value": "/etc/passwd"}, "filesystem is disabled"),
        ({"type": "pil", "value": "x"}, "not recognised image type 'pil'"),
    ],
)
def test_bad_images_are_400_in_roboflow_style(
    client: httpx.Client, image: dict[str, Any], cause: str
) -> None:
    out = error(client, "/clip/embed_image", {"image": image}, 400)
    assert out["message"].startswith("Could not load input image. Cause: ")
    assert cause in out["message"]


def test_corrupt_image_is_400_and_names_the_item(
    client: httpx.Client, images: dict[str, bytes]
) -> None:
    truncated = b64_image(images["blue"][: len(images["blue"]) // 2])
    out = error(client, "/clip/embed_image",
                {"image": [b64_image(images["red"]), truncated]}, 400)
    assert "image[1]" in out["message"]


def test_corrupt_prompt_image_names_the_key(client: httpx.Client,
                                            images: dict[str, bytes]) -> None:
    body = {"subject": "a cat", "subject_type": "text", "prompt_type": "image",
            "prompt": {"good": b64_image(images["red"]), "bad": {"type": "base64",
                                                                  "value": "AAAA"}}}
    out = error(client, "/clip/compare", body, 400)
    assert "prompt['bad']" in out["message"]


# ---------------------------------------------------------------------- 400 / 413 limits
@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/clip/embed_image", {"image": []}, "image"),
        ("/clip/embed_text", {"text": []}, "text"),
        ("/clip/compare", {"subject": "a", "subject_type": "text", "prompt": []}, "prompt"),
        ("/clip/compare", {"subject": "a", "subject_type": "text", "prompt": {}}, "prompt"),
    ],
)
def test_empty_lists_are_400(client: httpx.Client, route: str, body: Any, field: str) -> None:
    out = error(client, route, body, 400)
    assert out["message"].startswith(f"{field} must not be empty")


def test_too_many_images_is_413_naming_the_limit(client: httpx.Client,
                                                 images: dict[str, bytes]) -> None:
    out = error(client, "/clip/embed_image", {"image": [b64_image(images["red"])] * 9}, 413)
    assert "9" in out["message"]
    assert "limit is 8" in out["message"]


@pytest.mark.parametrize("as_dict", [False, True])
def test_too_many_prompts_is_413_naming_the_limit(client: httpx.Client, as_dict: bool) -> None:
    prompts = [f"p{i}" for i in range(9)]
    prompt: Any = {p: p for p in prompts} if as_dict else prompts
    body = {"subject": "a", "subject_type": "text", "prompt": prompt}
    out = error(client, "/clip/compare", body, 413)
    assert "prompts" in out["message"]
    assert "limit is 8" in out["message"]


def test_too_long_text_is_400(client: httpx.Client) -> None:
    limit = OPEN_SERVER["max_text_chars"]
    out = error(client, "/clip/embed_text", {"text": ["x", "y" * (limit + 1)]}, 400)
    assert "text[1]" in out["message"]
    assert str(limit) in out["message"]


def test_image_object_where_text_is_expected_is_400(client: httpx.Client,
                                                    images: dict[str, bytes]) -> None:
    body = {"subject": b64_image(images["red"]), "subject_type": "text", "prompt": "a"}
    out = error(client, "/clip/compare", body, 400)
    assert "subject is an image object but subject_type is 'text'" in out["message"]


# ---------------------------------------------------------------------- request body cap
def test_declared_body_over_the_cap_is_413(client: httpx.Client) -> None:
    cap = OPEN_SERVER["max_body_bytes"]
    out = error(client, "/clip/embed_text", {"text": "x" * (cap + 100)}, 413)
    assert str(cap) in out["message"]


def test_streamed_body_over_the_cap_is_413(client: httpx.Client) -> None:
    cap = OPEN_SERVER["max_body_bytes"]

    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(cap // 20_000 + 2):
            yield b"x" * 20_000
        yield b'"}'

    r = client.post("/clip/embed_text", content=chunks(),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert str(cap) in r.json()["message"]


# ---------------------------------------------------------------------- 404 / 405 / 500
def test_unknown_route_and_method(client: httpx.Client) -> None:
    assert client.get("/nope").json() == {"message": "Not Found"}
    r = client.get("/clip/embed_text")
    assert r.status_code == 405
    assert r.json() == {"message": "Method Not Allowed"}


def test_unexpected_exceptions_are_500_internal_error(
    client: httpx.Client, open_server: tuple[str, Any], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(open_server[1].state.models, "get", boom)
    with caplog.at_level("ERROR", logger="pixql.server"):
        r = client.post("/clip/embed_text", json={"text": "x"})
    assert r.status_code == 500
    assert r.json() == {"message": "Internal error."}
    assert "kaboom" in caplog.text
