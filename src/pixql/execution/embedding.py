"""Run an embedder over a column of values: decode in threads, forward in batches."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pixql.errors import ImageError
from pixql.images import default_workers, map_ordered
from pixql.models.inputs import InputSource, model_input
from pixql.progress import progress_bar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

    from pixql.models.base import Embedder
    from pixql.remote.sources import UrlReader

#: how many bad paths an error message names
MAX_NAMED = 5


@dataclass
class Embedded:
    """Vectors for a column: ``vectors[i]`` is meaningless where ``valid[i]`` is False."""

    vectors: np.ndarray  # (n, dim) float32
    valid: np.ndarray  # (n,) bool
    errors: list[str]


def _preparer(
    embedder: Embedder, modality: str, resolve: Callable[[str], Path],
    urls: UrlReader | None = None,
) -> Callable[[Any], Any]:
    source = InputSource(resolve=resolve, urls=urls)

    def prepare(value: Any) -> Any:
        if value is None:
            return _Failure("NULL value")
        try:
            return model_input(embedder, value, modality, source)
        except ImageError as e:
            return _Failure(str(e))
        except Exception as e:  # noqa: BLE001 - a bad item must name itself, not kill the pool
            return _Failure(f"{value}: {type(e).__name__}: {e}")

    return prepare


@dataclass
class _Failure:
    reason: str


def embed_values(
    embedder: Embedder,
    values: Sequence[Any],
    *,
    modality: str,
    resolve: Callable[[str], Path],
    batch_size: int = 256,
    workers: int | None = None,
    on_error: str = "fail",
    progress: bool = True,
    desc: str = "embedding",
    urls: UrlReader | None = None,
) -> Embedded:
    """Embed ``values`` (paths, URLs read by ``urls``, or texts) in order.

    ``on_error='fail'`` raises ImageError naming the first bad values before anything is
    written; ``'null'`` marks them invalid (stored as NULL) and carries on.
    """
    embedder.check_modality(modality)
    n = len(values)
    out = np.zeros((n, embedder.dim), dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    errors: list[str] = []
    prepare = _preparer(embedder, modality, resolve, urls)
    done = 0
    with progress_bar(total=n, desc=desc, unit="img" if modality == "image" else "item",
                      enabled=progress) as bar:
        for chunk in _prepared(prepare, values, workers, batch_size):
            good = [i for i, x in enumerate(chunk) if not isinstance(x, _Failure)]
            errors.extend(x.reason for x in chunk if isinstance(x, _Failure))
            if errors and on_error == "fail":
                _raise_bad(errors, values, done, chunk)
            if good:
                vecs = embedder.postprocess(embedder.forward([chunk[i] for i in good], modality))
                idx = np.asarray(good) + done
                out[idx] = vecs
                valid[idx] = True
            done += len(chunk)
            bar.update(len(chunk))
    return Embedded(out, valid, errors)


#: below this many seconds per item, decoding threads cost more than they give
THREADS_PAY_FROM = 0.001


def _prepared(prepare: Callable[[Any], Any], values: Sequence[Any], workers: int | None,
              batch_size: int) -> Iterator[list[Any]]:
    """Chunks of prepared items, in order. ``workers=None`` (the default) decides from the
    first chunk, prepared in this thread: small items (MNIST digits: ~0.15 ms each) are
    mostly Python work under the GIL, where two decoding threads ran at half the speed of
    one and slowed the model's own threads three-fold (benchmarks/convert.py); larger
    images (photos: milliseconds of decoding with the GIL released) go to a thread pool
    that prepares the next chunk while the model runs."""
    if workers is not None:
        yield from map_ordered(prepare, values, workers=workers, chunk=batch_size)
        return
    started = time.perf_counter()
    first = [prepare(v) for v in values[:batch_size]]
    per_item = (time.perf_counter() - started) / max(1, len(first))
    yield first
    rest = values[batch_size:]
    threads = default_workers() if per_item >= THREADS_PAY_FROM else 0
    yield from map_ordered(prepare, rest, workers=threads, chunk=batch_size)


def _raise_bad(errors: list[str], values: Sequence[Any], done: int, chunk: list[Any]) -> None:
    raise bad_values_error(errors)


def bad_values_error(errors: list[str]) -> ImageError:
    """The error of ``on_error='fail'``: the first bad values, and what to do."""
    shown = "; ".join(errors[:MAX_NAMED])
    more = " (and more)" if len(errors) > MAX_NAMED else ""
    return ImageError(
        f"cannot embed {len(errors)} value(s): {shown}{more}. Nothing was changed. "
        "Fix or remove these rows, or pass on_error='null' to store NULL embeddings for them.",
        paths=errors[:MAX_NAMED],
    )
