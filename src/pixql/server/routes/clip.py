"""``/clip/embed_image``, ``/clip/embed_text``, ``/clip/compare`` — Roboflow's CLIP routes.

Handlers are plain ``def``: FastAPI runs them in its thread pool, so decoding, downloading
and the model's forward pass never block the event loop. Errors are raised, never caught
here: :mod:`pixql.server.errors` maps them (400 bad input, 404 missing weights, 413 limits,
422 schema).

Embeddings go through the server's :class:`~pixql.server.service.EmbeddingService`
(``ClipModels.service``): cached rows first, then one micro-batched forward shared with
concurrent requests. Embedding responses are encoded with orjson when it is installed
(float32 values written in their shortest round-tripping form), else by pydantic.
``GET /stats`` reports the batching and cache counters.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, FastAPI, Query, Response

from pixql.errors import InputError
from pixql.models.base import l2_normalize
from pixql.models.inputs import raw_input
from pixql.server.cache import image_digest, text_digest
from pixql.server.deps import ImagesDep, ModelsDep, SettingsDep
from pixql.server.inputs import ImageLoader, check_count, check_texts, check_token_counts
from pixql.server.manager import ClipModels, LoadedModel
from pixql.server.schemas import (
    ClipCompareRequest,
    ClipCompareResponse,
    ClipEmbeddingResponse,
    ClipImageEmbeddingRequest,
    ClipTextEmbeddingRequest,
    ErrorResponse,
    ImageInput,
)
from pixql.server.service import EmbeddingService, ServiceStats
from pixql.server.settings import ServerSettings


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Shutdown: finish queued batches and stop the batch workers (merged into the app's)."""
    yield
    from starlette.concurrency import run_in_threadpool

    await run_in_threadpool(app.state.models.close)


router = APIRouter(tags=["clip"], lifespan=_lifespan)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "bad input: undecodable image, refused URL, too long text, unknown clip_version_id",
        401: "missing or invalid API key (only when the server has keys)",
        404: "no weights for the requested clip_version_id",
        413: "too many items, or a request body over the server's cap",
    }.items()
}
#: the query parameter Roboflow's routes take (checked by the auth middleware)
ApiKeyQuery = Annotated[
    str | None, Query(description="API key (overrides the body's api_key)")
]


def _model(models: ClipModels, version_id: str | None, response: Response) -> LoadedModel:
    """The requested model; Roboflow's X-Model-* headers describe it."""
    model, cold = models.get(version_id)
    response.headers["X-Model-Id"] = model.model_id
    response.headers["X-Model-Cold-Start"] = "true" if cold else "false"
    if cold:
        response.headers["X-Model-Load-Time"] = f"{model.load_seconds:.4f}"
    return model


def _finish(response: Response, started: float) -> float:
    elapsed = time.perf_counter() - started
    response.headers["X-Processing-Time"] = f"{elapsed:.4f}"
    return elapsed


def _as_list(value: Any) -> tuple[list[Any], list[str]]:
    """(items, name suffixes for messages) of a single value (``""``) or a list (``"[i]"``)."""
    if isinstance(value, list):
        return list(value), [f"[{i}]" for i in range(len(value))]
    return [value], [""]


def embed_items(
    model: LoadedModel,
    images: ImageLoader,
    settings: ServerSettings,
    items: Sequence[ImageInput | str],
    *,
    modality: str,
    names: Sequence[str],
    normalize: bool = False,
    truncate: bool = True,
    service: EmbeddingService | None = None,
) -> np.ndarray:
    """Embed ``items`` (all images or all texts), one row each, in order.

    With ``service``: cached rows, then one micro-batched forward for the rest; without:
    ``Embedder.embed`` in this thread.
    """
    hashing = service is not None and service.cache.enabled
    load: Callable[[list[int]], list[Any]]
    digests: list[str | None]
    if modality == "image":
        load = partial(_load_images, images, items, names)
        digests = [image_digest(x) if hashing else None for x in items]
    else:
        texts = _checked_texts(model, settings, items, names, truncate=truncate)
        load = partial(_pick, texts)
        digests = [text_digest(t) if hashing else None for t in texts]
    if service is None:
        return model.embedder.embed(load(list(range(len(items)))), modality,
                                    normalize=normalize)
    raw = service.embed(model.embedder, digests, modality, load)
    return l2_normalize(raw) if normalize else raw


def _load_images(images: ImageLoader, items: Sequence[ImageInput | str],
                 names: Sequence[str], idx: list[int]) -> list[Any]:
    decoded = images.load_all([items[i] for i in idx], [names[i] for i in idx])
    return [raw_input(img, "image") for img in decoded]  # the one value → input seam


def _pick(values: Sequence[Any], idx: list[int]) -> list[Any]:
    return [raw_input(values[i], "text") for i in idx]


def _checked_texts(model: LoadedModel, settings: ServerSettings,
                   items: Sequence[ImageInput | str], names: Sequence[str], *,
                   truncate: bool) -> list[str]:
    """The items as texts: strings, not too long (characters; tokens unless truncating)."""
    texts: list[str] = []
    for item, name in zip(items, names, strict=True):
        if not isinstance(item, str):
            field = name.split("[", 1)[0]
            raise InputError(f"{name} is an image object but {field}_type is 'text'", field=field)
        texts.append(item)
    check_texts(texts, field=names[0].split("[", 1)[0], max_chars=settings.max_text_chars,
                names=names)
    if not truncate:
        check_token_counts(model.embedder, texts, names)
    return texts


def encode_json(body: dict[str, Any]) -> bytes:
    """JSON bytes of a response body whose values may be float32 arrays.

    orjson (when installed) writes each float32 in the shortest form that parses back to
    the same float32, straight from the array; the fallback (pydantic's encoder) writes
    the float32 values widened to float64. Both round-trip to the same float32.
    """
    try:
        import orjson
    except ImportError:  # the optional speed-up is missing: same JSON, slower, longer
        import pydantic_core

        plain = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in body.items()}
        return pydantic_core.to_json(plain)
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _embedding_response(vectors: np.ndarray, response: Response, started: float) -> Response:
    """A ``ClipEmbeddingResponse`` body, encoded fast; headers set on ``response`` kept."""
    body = {
        "inference_id": str(uuid.uuid4()),
        "frame_id": None,
        "time": _finish(response, started),
        "embeddings": np.ascontiguousarray(vectors, dtype=np.float32),
    }
    out = Response(content=encode_json(body), media_type="application/json")
    out.headers.raw.extend(response.headers.raw)
    return out


def cosine(subject: np.ndarray, prompts: np.ndarray) -> list[float]:
    """Cosine similarity of one vector with each row of ``prompts`` (float64, in [-1, 1])."""
    a = subject.astype(np.float64).reshape(-1)
    b = prompts.astype(np.float64)
    denominator = np.maximum(np.linalg.norm(b, axis=1) * np.linalg.norm(a), 1e-12)
    return [float(x) for x in np.clip((b @ a) / denominator, -1.0, 1.0)]


@router.post(
    "/clip/embed_image",
    response_model=ClipEmbeddingResponse,
    responses=ERRORS,
    summary="Embed one or more images",
)
def embed_image(
    payload: ClipImageEmbeddingRequest,
    models: ModelsDep,
    images: ImagesDep,
    settings: SettingsDep,
    response: Response,
    api_key: ApiKeyQuery = None,
) -> Response:
    """One embedding row per image, in order (raw projections unless ``normalize``)."""
    items, suffixes = _as_list(payload.image)
    check_count(items, field="image", limit=settings.max_images, what="images")
    model = _model(models, payload.clip_version_id, response)
    started = time.perf_counter()
    vectors = embed_items(model, images, settings, items, modality="image",
                          names=[f"image{s}" for s in suffixes], normalize=payload.normalize,
                          service=models.service)
    return _embedding_response(vectors, response, started)


@router.post(
    "/clip/embed_text",
    response_model=ClipEmbeddingResponse,
    responses=ERRORS,
    summary="Embed one or more texts",
)
def embed_text(
    payload: ClipTextEmbeddingRequest,
    models: ModelsDep,
    images: ImagesDep,
    settings: SettingsDep,
    response: Response,
    api_key: ApiKeyQuery = None,
) -> Response:
    """One embedding row per text, in order (raw projections unless ``normalize``)."""
    items, suffixes = _as_list(payload.text)
    check_count(items, field="text", limit=settings.max_texts, what="texts")
    model = _model(models, payload.clip_version_id, response)
    started = time.perf_counter()
    vectors = embed_items(model, images, settings, items, modality="text",
                          names=[f"text{s}" for s in suffixes], normalize=payload.normalize,
                          truncate=payload.truncate, service=models.service)
    return _embedding_response(vectors, response, started)


def _prompt_items(prompt: Any) -> tuple[list[Any], list[str], list[str] | None]:
    """(items, names, dict keys or None) of a prompt: item, list or dict of named items."""
    if isinstance(prompt, dict):
        keys = list(prompt)
        return [prompt[k] for k in keys], [f"prompt[{k!r}]" for k in keys], keys
    items, suffixes = _as_list(prompt)
    return items, [f"prompt{s}" for s in suffixes], None


@router.post(
    "/clip/compare",
    response_model=ClipCompareResponse,
    responses=ERRORS,
    summary="Cosine similarity of a subject with prompts",
)
def compare(
    payload: ClipCompareRequest,
    models: ModelsDep,
    images: ImagesDep,
    settings: SettingsDep,
    response: Response,
    api_key: ApiKeyQuery = None,
) -> ClipCompareResponse:
    """Similarity shaped like the prompt: a list (single item → 1 element) or a dict."""
    items, names, keys = _prompt_items(payload.prompt)
    check_count(items, field="prompt", limit=settings.max_prompts, what="prompts")
    model = _model(models, payload.clip_version_id, response)
    started = time.perf_counter()
    subject = embed_items(model, images, settings, [payload.subject],
                          modality=payload.subject_type, names=["subject"],
                          truncate=payload.truncate, service=models.service)
    prompts = embed_items(model, images, settings, items, modality=payload.prompt_type,
                          names=names, truncate=payload.truncate, service=models.service)
    sims = cosine(subject[0], prompts)
    similarity: list[float] | dict[str, float] = (
        dict(zip(keys, sims, strict=True)) if keys is not None else sims
    )
    return ClipCompareResponse(
        inference_id=str(uuid.uuid4()), time=_finish(response, started), similarity=similarity,
    )


@router.get("/stats", response_model=ServiceStats, tags=["models"],
            summary="Micro-batching and embedding-cache counters")
def stats(models: ModelsDep) -> ServiceStats:
    """Forward passes, items per batch and cache hits since start-up (or the model's load)."""
    return models.service.stats()
