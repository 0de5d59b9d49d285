"""An LRU cache of embeddings, keyed by model and content hash.

Keys are ``(model key, modality, sha256)``: the model key names the model *and* its weights
(``clip/ViT-B-32@/models/ViT-B-32``), the digest is the sha256 of the text (UTF-8) or of
the image bytes as received (base64 images: the decoded bytes). Values are the model's raw
float32 projections; callers L2-normalise after a lookup, so ``normalize`` is not part of
the key and one entry serves both forms.

What is cached:

* texts — always (``truncate`` only decides whether a long text is refused, not how it
  embeds, so it is not part of the key either);
* base64 images — the decoded bytes are hashed before any image decoding, so a hit skips
  decoding, preprocessing and the forward pass;
* URL and file images — never: their content can change behind the same address and the
  bytes are only known after the download (see :func:`image_digest`).

Examples:
    >>> import numpy as np
    >>> cache = EmbeddingCache(2)
    >>> key = ("clip/ViT-B-32@w", "text", text_digest("a cat"))
    >>> cache.get(key) is None
    True
    >>> cache.put(key, np.ones(4, dtype=np.float32))
    >>> cache.get(key).tolist(), cache.stats().hits, cache.stats().misses
    ([1.0, 1.0, 1.0, 1.0], 1, 1)
"""

from __future__ import annotations

import binascii
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

#: ``(model key, modality, sha256 hex digest)``
CacheKey = tuple[str, str, str]


class CacheStats(BaseModel):
    """Counters of the embedding cache (part of `GET /stats`)."""

    enabled: bool = Field(description="false when embedding_cache_size is 0")
    entries: int = Field(description="embeddings held now")
    max_entries: int = Field(description="capacity (embedding_cache_size)")
    hits: int = Field(description="lookups answered from the cache")
    misses: int = Field(description="cacheable lookups that had to be computed")
    uncacheable: int = Field(description="items never cached (URL and file images)")
    evictions: int = Field(description="entries dropped to make room (least recently used)")
    hit_rate: float = Field(description="hits / (hits + misses); 0 before any lookup")


class EmbeddingCache:
    """Thread-safe LRU map of :data:`CacheKey` → read-only float32 row.

    Args:
        max_entries: capacity in embeddings; 0 turns the cache off (every lookup misses
            without being counted, nothing is stored).
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self.max_entries = int(max_entries)
        self._rows: OrderedDict[CacheKey, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = self._uncacheable = self._evictions = 0

    @property
    def enabled(self) -> bool:
        """Whether anything is ever stored."""
        return self.max_entries > 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    # ------------------------------------------------------------------ lookups
    def get(self, key: CacheKey | None) -> np.ndarray | None:
        """The row stored under ``key`` (marked most recently used), or None."""
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[CacheKey | None]) -> list[np.ndarray | None]:
        """Rows for ``keys`` in order; None for misses and for ``None`` (uncacheable) keys."""
        out: list[np.ndarray | None] = []
        with self._lock:
            for key in keys:
                if key is None:
                    self._uncacheable += 1
                    out.append(None)
                    continue
                if not self.enabled:
                    out.append(None)
                    continue
                row = self._rows.get(key)
                if row is None:
                    self._misses += 1
                else:
                    self._hits += 1
                    self._rows.move_to_end(key)
                out.append(row)
        return out

    # ------------------------------------------------------------------ updates
    def put(self, key: CacheKey | None, row: np.ndarray) -> None:
        """Store a copy of ``row`` under ``key`` (no-op when off or ``key`` is None)."""
        self.put_many([(key, row)])

    def put_many(self, pairs: Iterable[tuple[CacheKey | None, np.ndarray]]) -> None:
        """Store several rows, evicting the least recently used beyond capacity."""
        if not self.enabled:
            return
        frozen = [(k, _frozen(row)) for k, row in pairs if k is not None]
        with self._lock:
            for key, row in frozen:
                self._rows[key] = row
                self._rows.move_to_end(key)
            while len(self._rows) > self.max_entries:
                self._rows.popitem(last=False)
                self._evictions += 1

    def drop_model(self, model_id: str) -> int:
        """Forget the entries of ``model_id`` (any weights); return how many went."""
        prefix = f"{model_id}@"
        with self._lock:
            doomed = [k for k in self._rows if k[0] == model_id or k[0].startswith(prefix)]
            for key in doomed:
                del self._rows[key]
        return len(doomed)

    def clear(self) -> None:
        """Forget every entry (the counters stay)."""
        with self._lock:
            self._rows.clear()

    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        with self._lock:
            looked_up = self._hits + self._misses
            return CacheStats(
                enabled=self.enabled, entries=len(self._rows), max_entries=self.max_entries,
                hits=self._hits, misses=self._misses, uncacheable=self._uncacheable,
                evictions=self._evictions,
                hit_rate=self._hits / looked_up if looked_up else 0.0,
            )


def _frozen(row: np.ndarray) -> np.ndarray:
    out = np.array(row, dtype=np.float32, copy=True).reshape(-1)
    out.setflags(write=False)
    return out


# ---------------------------------------------------------------------- digests
def text_digest(text: str) -> str:
    """sha256 of the text's UTF-8 bytes (lone surrogates kept, not replaced)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def image_digest(item: Any) -> str | None:
    """sha256 of a base64 image's decoded bytes; None for anything else.

    ``item`` is an image declaration (``.type`` / ``.value``) or a bare string (base64
    unless it starts with ``http://`` / ``https://``). Malformed base64 gives None too: the
    image loader then reports the error as usual.
    """
    from pixql.server.inputs import _b64decode

    if isinstance(item, str):
        value: Any = item
        if value.lower().startswith(("http://", "https://")):
            return None
    elif str(getattr(item, "type", "")).strip().lower() == "base64":
        value = getattr(item, "value", None)
    else:
        return None
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return hashlib.sha256(_b64decode(value)).hexdigest()
    except (binascii.Error, ValueError):
        return None
