"""Find CLIP weights and load them once per process.

Resolution order for ``load_clip(version_id, path=..., models_dir=...)``:

1. ``path`` — a folder in open_clip's hub layout: ``open_clip_config.json`` plus
   ``open_clip_model.safetensors`` (or ``open_clip_pytorch_model.bin``).
2. ``<models_dir>/<version_id>/`` in the same layout; ``models_dir`` defaults to
   ``$PIXQL_CLIP_MODELS_DIR``.
3. Hugging Face's cache, without network (weights downloaded earlier by open_clip).
4. Online: open_clip's own download (``pretrained='openai'``) into the Hugging Face cache —
   only when no local folder was named or found, and never when ``PIXQL_OFFLINE`` or
   ``HF_HUB_OFFLINE`` is set. The download host (``$HF_ENDPOINT``, huggingface.co by
   default) must first accept a connection within :data:`CONNECT_TIMEOUT_S` seconds: a
   machine without network fails at once with the message naming the local options, rather
   than after the hub client's own timeouts and retries (about 47 s).

A folder holding the weights but no ``open_clip_config.json`` is loaded with open_clip's
built-in config for ``version_id``. Loading always goes through open_clip's
``create_model_from_pretrained`` (``'local-dir:<folder>'`` for hub-layout folders).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixql.errors import ModelError, WeightsNotFoundError
from pixql.models.clip.names import ClipVariant, get_variant, resolve_version_id

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from pixql.models.clip.embedder import ClipEmbedder

log = logging.getLogger(__name__)

#: environment variable naming the folder of ``<version_id>/`` weight folders
MODELS_DIR_ENV = "PIXQL_CLIP_MODELS_DIR"
#: any of these set to a true value forbids downloads
OFFLINE_ENVS = ("PIXQL_OFFLINE", "HF_HUB_OFFLINE")
#: seconds the download host may take to accept a connection before the load gives up
CONNECT_TIMEOUT_S = 3.0
CONFIG_NAME = "open_clip_config.json"
#: weight file names of the hub layout, in order of preference
WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

_Key = tuple[str, str, str, int, str]  # version, weights, device, video frames, backend
_CACHE: dict[_Key, ClipEmbedder] = {}
_CACHE_LOCK = threading.Lock()
#: a lock per key being loaded (see load_clip)
_LOADING: dict[_Key, threading.Lock] = {}


@dataclass(frozen=True)
class WeightsSource:
    """Where a CLIP model's weights come from."""

    #: ``"path"``, ``"models_dir"``, ``"hf_cache"`` or ``"online"``
    origin: str
    #: the folder holding the weights (``None`` for ``"online"``)
    folder: Path | None = None

    @property
    def key(self) -> str:
        """A stable cache key / description."""
        return str(self.folder) if self.folder else self.origin


def load_clip(
    version_id: str | None = None,
    *,
    path: Path | str | None = None,
    models_dir: Path | str | None = None,
    device: str = "cpu",
    video_frames: int = 8,
    backend: str | None = None,
) -> ClipEmbedder:
    """Load (once per process) the CLIP model ``version_id``.

    Args:
        version_id: a Roboflow ``clip_version_id`` (``RN50`` … ``ViT-L-14-336px``); default
            ``$CLIP_VERSION_ID`` or ``ViT-B-16``. With ``path`` it is only the model's label.
        path: a folder in open_clip's hub layout (see the module docstring).
        models_dir: folder of ``<version_id>/`` folders; overrides ``$PIXQL_CLIP_MODELS_DIR``.
        device: torch device for the model.
        video_frames: frames sampled per video.
        backend: ``torch``, ``onnx``, ``onnx-int8``, ``openvino``, ``openvino-int8``
            or ``auto``; default
            ``$PIXQL_CLIP_BACKEND`` or ``auto`` (see :mod:`pixql.models.clip.backends`;
            ``auto`` exports the towers to ONNX on the first load of given weights, and
            falls back to torch when anything about that fails).

    Returns:
        The shared :class:`ClipEmbedder` for this (version, weights folder, device, backend).

    Raises:
        ModelError: unknown ``version_id``, or weight files that cannot be loaded.
        WeightsNotFoundError: no weights anywhere; the message says which files go where.

    Examples:
        >>> emb = load_clip("ViT-B-32", models_dir="~/clip-weights")       # doctest: +SKIP
        >>> emb.embed(["a black cat"], "text", normalize=False).shape       # doctest: +SKIP
        (1, 512)
    """
    from pixql.models.clip.backends import attach_backend, resolve_backend

    version = resolve_version_id(version_id)
    runtime = resolve_backend(backend)
    source = resolve_weights(version, path=path, models_dir=models_dir)
    key = (version, source.key, str(device), int(video_frames), runtime)
    return _load_once(key, lambda: attach_backend(
        _load(version, source, device=device, video_frames=video_frames), runtime))


def _load_once(key: _Key, make: Callable[[], ClipEmbedder]) -> ClipEmbedder:
    """The cached embedder for ``key``, made by ``make`` once per key: other models stay
    available meanwhile (a first ``auto`` load exports to ONNX, which takes minutes for
    large models)."""
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        loading = _LOADING.setdefault(key, threading.Lock())
    with loading:
        with _CACHE_LOCK:
            if key in _CACHE:
                return _CACHE[key]
        embedder = make()
        with _CACHE_LOCK:
            _LOADING.pop(key, None)
            return _CACHE.setdefault(key, embedder)


def clear_cache() -> None:
    """Forget every loaded model (tests; freeing memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def evict(version_id: str) -> None:
    """Forget the loaded models of ``version_id`` (every weights folder, device, backend);
    whoever still holds one keeps it."""
    with _CACHE_LOCK:
        for key in [k for k in _CACHE if k[0] == version_id]:
            del _CACHE[key]


def offline() -> bool:
    """Whether downloads are forbidden (``PIXQL_OFFLINE`` / ``HF_HUB_OFFLINE``)."""
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in OFFLINE_ENVS
    )


def models_dir_from_env(models_dir: Path | str | None = None) -> Path | None:
    """``models_dir`` or ``$PIXQL_CLIP_MODELS_DIR`` (``~`` expanded), or None."""
    raw = models_dir if models_dir is not None else os.environ.get(MODELS_DIR_ENV, "").strip()
    return Path(raw).expanduser().absolute() if raw else None


def resolve_weights(
    version_id: str, *, path: Path | str | None = None, models_dir: Path | str | None = None
) -> WeightsSource:
    """Decide where the weights of ``version_id`` come from (no loading)."""
    variant = get_variant(version_id)
    if path is not None:
        folder = Path(path).expanduser().absolute()
        if not folder.is_dir():
            raise WeightsNotFoundError(
                _not_found_message(variant, folder, None, f"the folder {folder} does not exist")
            )
        return WeightsSource("path", folder)
    root = models_dir_from_env(models_dir)
    if root is not None and (root / version_id).is_dir():
        return WeightsSource("models_dir", root / version_id)
    cached = _hf_cache_folder(variant)
    if cached is not None:
        return WeightsSource("hf_cache", cached)
    if offline():
        reason = "downloads are disabled (PIXQL_OFFLINE / HF_HUB_OFFLINE is set)"
        raise WeightsNotFoundError(_not_found_message(variant, None, root, reason))
    return WeightsSource("online")


def _load(version: str, source: WeightsSource, *, device: str, video_frames: int) -> ClipEmbedder:
    variant = get_variant(version)
    if source.folder is None:
        unreachable = download_host_unreachable()
        if unreachable:
            raise WeightsNotFoundError(
                _not_found_message(variant, None, models_dir_from_env(), unreachable))
        name, kwargs, where = _online_args(variant)
    else:
        name, kwargs, where = _folder_args(variant, source)
    return _build(variant, name, kwargs, where=where, source=source, device=device,
                  video_frames=video_frames)


def _folder_args(variant: ClipVariant, source: WeightsSource) -> tuple[str, dict[str, Any], str]:
    folder = source.folder
    assert folder is not None
    weights = next((folder / n for n in WEIGHT_NAMES if (folder / n).is_file()), None)
    if weights is None:
        root = folder.parent if source.origin == "models_dir" else None
        raise WeightsNotFoundError(
            _not_found_message(variant, folder if root is None else None, root,
                               f"no weight file in {folder}")
        )
    if (folder / CONFIG_NAME).is_file():
        return f"local-dir:{folder}", {}, str(folder)
    # weights without a config: open_clip's built-in architecture for this version
    return variant.open_clip_name, {"pretrained": str(weights),
                                    "force_quick_gelu": variant.quick_gelu}, str(weights)


def _online_args(variant: ClipVariant) -> tuple[str, dict[str, Any], str]:
    kwargs = {"pretrained": variant.pretrained, "force_quick_gelu": variant.quick_gelu}
    where = f"open_clip:{variant.open_clip_name}/{variant.pretrained}"
    return variant.open_clip_name, kwargs, where


def _build(
    variant: ClipVariant,
    name: str,
    kwargs: dict[str, Any],
    *,
    where: str,
    source: WeightsSource,
    device: str,
    video_frames: int,
) -> ClipEmbedder:
    import open_clip

    from pixql.models.clip.embedder import ClipEmbedder

    try:
        model, preprocess = open_clip.create_model_from_pretrained(name, device=device, **kwargs)
        tokenizer = open_clip.get_tokenizer(name)
        config = open_clip.get_model_config(name) or {}
    except Exception as e:
        if source.origin == "online":
            reason = f"the download failed ({type(e).__name__}: {e})"
            raise WeightsNotFoundError(
                _not_found_message(variant, None, models_dir_from_env(), reason)
            ) from e
        raise ModelError(
            f"cannot load CLIP weights from {where}: {type(e).__name__}: {e}. "
            "The files may be corrupt or belong to another architecture; "
            "download them again (see the pixql docs, 'CLIP weights')."
        ) from e
    dim = int(config.get("embed_dim") or variant.dim)
    log.info("loaded CLIP %s from %s", variant.version_id, where)

    def reload() -> Any:  # the same weights again, after a backend released them
        return open_clip.create_model_from_pretrained(name, device=device, **kwargs)[0]

    return ClipEmbedder(model, preprocess, tokenizer, version_id=variant.version_id, dim=dim,
                        source=where, video_frames=video_frames, weights_folder=source.folder,
                        reload=reload)


def download_host_unreachable(timeout_s: float | None = None) -> str | None:
    """Why the weights' download host cannot be reached, or None when it accepts a TCP
    connection within ``timeout_s`` (default :data:`CONNECT_TIMEOUT_S`). Name resolution
    and connecting run in a daemon thread, so a resolver that hangs cannot hold the caller
    longer than the timeout either."""
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http"
                                                                 else 80)
    timeout = CONNECT_TIMEOUT_S if timeout_s is None else timeout_s
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(e)

    probe = threading.Thread(target=connect, name="pixql-download-probe", daemon=True)
    probe.start()
    probe.join(timeout)
    if not outcome:
        return f"the download host {host}:{port} did not answer within {timeout:g} s (offline?)"
    error = outcome[0]
    if error is not None:
        return f"cannot reach the download host {host}:{port} ({type(error).__name__}: {error})"
    return None


def _hf_cache_folder(variant: ClipVariant) -> Path | None:
    """The Hugging Face cache snapshot holding this variant's open_clip weights, if any.

    open_clip's own download (``pretrained='openai'``) fetches only the weight file; the
    snapshot folder is then loaded with open_clip's built-in config (see ``_folder_args``).
    No network is used.
    """
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with open_clip
        return None
    for name in WEIGHT_NAMES:
        weights = try_to_load_from_cache(variant.hf_hub, name)
        if isinstance(weights, str):
            return Path(weights).parent
    return None


def download_command(variant: ClipVariant, target: str) -> str:
    """A shell one-liner that downloads ``variant`` in the hub layout into ``target``."""
    files = [CONFIG_NAME, WEIGHT_NAMES[0]]
    return (
        'python -c "from huggingface_hub import snapshot_download; '
        f"snapshot_download('{variant.hf_hub}', allow_patterns={files!r}, "
        f"local_dir='{target}')\""
    )


def _not_found_message(
    variant: ClipVariant, folder: Path | None, root: Path | None, reason: str
) -> str:
    """Which files are expected where, and how to get them."""
    files = f"{CONFIG_NAME} + {WEIGHT_NAMES[0]} (or {WEIGHT_NAMES[1]})"
    if folder is not None:
        where = f"Expected {files} in {folder}."
        target = str(folder)
    else:
        base = str(root) if root else f"${MODELS_DIR_ENV}"
        target = f"{base}/{variant.version_id}"
        where = (f"Expected {files} in {target}/ (set {MODELS_DIR_ENV} to the folder of "
                 f"version folders, or pass path=<folder> / OPTIONS (path='<folder>')).")
    online = (
        f" Or unset PIXQL_OFFLINE/HF_HUB_OFFLINE to let open_clip download "
        f"{variant.open_clip_name}/{variant.pretrained} into the Hugging Face cache."
        if offline() else ""
    )
    return (
        f"CLIP weights for clip_version_id {variant.version_id!r} not found: {reason}. "
        f"{where} To get them (needs internet once): {download_command(variant, target)}"
        f"{online}"
    )
