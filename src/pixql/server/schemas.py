"""Request and response bodies, wire-compatible with Roboflow Inference Server's CLIP API.

Field names and their order follow Roboflow's pydantic models (``ClipImageEmbeddingRequest``,
``ClipEmbeddingResponse``, ``ClipCompareResponse``, ``ModelsDescriptions``...), so its clients
(``inference_sdk.InferenceHTTPClient``) work unchanged. Differences, all additive:

* ``normalize`` (request, default ``false``): return L2-normalised embeddings.
* ``inference_id`` (response) is a fresh UUID instead of ``null``.
* ``subject_type`` / ``prompt_type`` are validated (``'image'`` or ``'text'``) → 422, not 500.
* ``clip_version_id: null`` means the server's default (Roboflow would try ``clip/None``).
* ``model_id`` is accepted and ignored, as in Roboflow's routes.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: the two things CLIP embeds
InputType = Literal["image", "text"]


class ImageInput(BaseModel):
    """One image (Roboflow's ``InferenceRequestImage``).

    ``type`` is ``"base64"`` (optionally with a ``data:image/...;base64,`` prefix) or
    ``"url"`` (http/https); ``"file"`` only when the server enables it; ``"numpy"``
    (pickled arrays) is always refused.
    """

    model_config = ConfigDict(extra="ignore")

    type: str = Field(description="'base64' or 'url' ('file' when enabled by the server)")
    value: Any = Field(default=None, description="the base64 text or the URL")


class BaseRequest(BaseModel):
    """Fields every Roboflow request carries; most are accepted for compatibility only."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), description="request id")
    api_key: str | None = Field(default=None, description="API key (also ?api_key= or Bearer)")
    usage_billable: bool = True
    start: float | None = None
    source: str | None = None
    source_info: str | None = None
    disable_model_monitoring: bool | None = False


class ClipInferenceRequest(BaseRequest):
    """Base of the three CLIP requests."""

    clip_version_id: str | None = Field(
        default=None,
        description="RN101, RN50, RN50x16, RN50x4, RN50x64, ViT-B-16, ViT-B-32, "
        "ViT-L-14-336px or ViT-L-14 (null: the server's default)",
        examples=["ViT-B-16"],
    )
    model_id: str | None = Field(default=None, description="accepted and ignored")


class ClipImageEmbeddingRequest(ClipInferenceRequest):
    """``POST /clip/embed_image``: one image or a list of them."""

    image: list[ImageInput] | ImageInput = Field(description="an image or a list of images")
    normalize: bool = Field(default=False, description="L2-normalise the embeddings")


TRUNCATE_DESCRIPTION = (
    "texts longer than the model's context (77 tokens) are truncated (true, the default) or "
    "refused with a 400 (false)"
)


class ClipTextEmbeddingRequest(ClipInferenceRequest):
    """``POST /clip/embed_text``: one text or a list of them.

    Texts longer than the model's context (77 tokens) are truncated by the tokenizer unless
    ``truncate`` is false (then they are refused with a 400 naming the text).
    """

    text: list[str] | str = Field(description="a text or a list of texts")
    normalize: bool = Field(default=False, description="L2-normalise the embeddings")
    truncate: bool = Field(default=True, description=TRUNCATE_DESCRIPTION)


PromptItem = ImageInput | str
Prompt = Annotated[
    ImageInput | str | list[PromptItem] | dict[str, PromptItem],
    Field(union_mode="left_to_right"),
]


class ClipCompareRequest(ClipInferenceRequest):
    """``POST /clip/compare``: cosine similarity of one subject with one or more prompts.

    ``prompt`` may be a single item (→ 1-element list), a list (→ list) or a dict of named
    items (→ dict with the same keys in the same order). A dict holding both ``type`` and
    ``value`` keys is one image, as in Roboflow.
    """

    subject: ImageInput | str = Field(description="the image or text to compare")
    subject_type: InputType = Field(default="image", description="'image' or 'text'")
    prompt: Prompt = Field(description="an item, a list of items or a dict of named items")
    prompt_type: InputType = Field(default="text", description="'image' or 'text'")
    truncate: bool = Field(default=True, description=TRUNCATE_DESCRIPTION)


class InferenceResponse(BaseModel):
    """Fields of every Roboflow inference response (always present, possibly null)."""

    inference_id: str | None = Field(default=None, description="a UUID for this request")
    frame_id: int | None = Field(default=None, description="always null (video only)")
    time: float | None = Field(default=None, description="seconds spent (decoding included)")


class ClipEmbeddingResponse(InferenceResponse):
    """Embeddings: one row per input, in input order (raw unless ``normalize`` was set)."""

    embeddings: list[list[float]]


class ClipCompareResponse(InferenceResponse):
    """Cosine similarities, shaped like the prompt (list, or dict with the prompt's keys)."""

    similarity: list[float] | dict[str, float]
    parent_id: str | None = None


class ModelDescription(BaseModel):
    """One loaded model (Roboflow's ``ModelDescription``)."""

    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    task_type: str = "embedding"
    batch_size: int | str | None = None
    input_height: int | None = None
    input_width: int | None = None
    vram_bytes: int | None = None
    request_aliases: list[str] = Field(default_factory=list)
    request_paths: list[str] = Field(default_factory=list)


class ModelsDescriptions(BaseModel):
    """The loaded models (GPU fields are null: pixql does not measure GPU memory)."""

    models: list[ModelDescription]
    total_vram_bytes: int | None = None
    gpu_memory_used: int | None = None
    gpu_memory_total: int | None = None
    torch_cuda_allocated: int | None = None
    torch_cuda_reserved: int | None = None
    torch_cuda_allocator_cache: int | None = None
    non_torch_gpu_memory: int | None = None


class AddModelRequest(BaseModel):
    """``POST /model/add``."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model_id: str = Field(description="e.g. 'clip/ViT-B-16'", examples=["clip/ViT-B-16"])
    model_type: str | None = None
    api_key: str | None = None


class ClearModelRequest(BaseModel):
    """``POST /model/remove``."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model_id: str = Field(description="e.g. 'clip/ViT-B-16'", examples=["clip/ViT-B-16"])
    api_key: str | None = None


class InfoResponse(BaseModel):
    """``GET /info``."""

    name: str
    version: str
    uuid: str


class HealthResponse(BaseModel):
    """``GET /healthz`` and ``GET /readiness``."""

    status: str
    reason: str | None = None


class ErrorResponse(BaseModel):
    """Every error body: a readable ``message`` (422s add FastAPI's ``detail`` list)."""

    message: str
    error: str | None = None
