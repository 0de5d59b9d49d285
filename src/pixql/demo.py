"""``pixql demo``: image search on hand-written digits, end to end, in a couple of minutes.

The digits are scikit-learn's (``sklearn.datasets.load_digits``: 1,797 grey 8x8 images,
shipped with the package, so nothing is downloaded). The demo writes them as 28x28 PNGs
into ``<workdir>/digits/<label>/<i>.png`` and then uses nothing but SQL::

    COPY digits OPTIONS (if_exists='replace') FROM 'digits/'
    BUILD MODEL demo_simclr USING SimCLR OPTIONS (...) AS SELECT * FROM digits
    BUILD MODEL demo_pixels USING Pixels OPTIONS (overwrite=True)
    CONVERT USING demo_simclr OPTIONS (result_col='simclr') AS SELECT * FROM digits
    SEARCH IMAGE USING demo_simclr OPTIONS (search_by='image', search_input='digits/3/...png',
                                            emb_col='simclr', top_k=9) AS SELECT ...

It prints the best matches, compares precision@10 with the raw-pixel baseline, and draws
``<workdir>/demo_results.png`` (the query and its matches, scores on the tiles).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from pixql.contact_sheet import make_contact_sheet
from pixql.errors import MissingDependencyError

#: side of the PNGs the 8x8 digits are written as (MNIST's size) ...
DIGIT_SIZE = 28
#: ... with the digit enlarged to this side and centred on black, as in MNIST
GLYPH_SIZE = 20
#: models the demo builds
SIMCLR_MODEL = "demo_simclr"
PIXELS_MODEL = "demo_pixels"


def precision_at_k(vectors: np.ndarray, labels: np.ndarray, *, k: int = 10,
                   chunk: int = 1000) -> float:
    """Mean share of each row's ``k`` nearest *other* rows (cosine) that share its label.

    Examples:
        >>> v = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], dtype=np.float32)
        >>> precision_at_k(v, np.array([0, 0, 1, 1]), k=1)
        1.0
    """
    v = np.asarray(vectors, dtype=np.float32)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    labels = np.asarray(labels)
    k = min(k, len(v) - 1)
    hits = 0
    for start in range(0, len(v), chunk):
        sims = v[start:start + chunk] @ v.T
        rows = np.arange(sims.shape[0])
        sims[rows, rows + start] = -np.inf  # the query itself never counts
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        hits += int((labels[top] == labels[start:start + chunk, None]).sum())
    return hits / (len(v) * k)


def write_digits(folder: Path, *, limit: int | None = None) -> int:
    """Write scikit-learn's digits as ``folder/<label>/<i>.png`` (28x28 grey, a 20x20 white
    digit centred on black, like MNIST); files already there are kept. ``limit`` writes
    only the first ``limit`` digits. Returns the number of images written or kept."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise MissingDependencyError(
            "the demo needs scikit-learn for its digits: pip install 'pixql[demo]'") from e
    from PIL import Image

    digits = load_digits()
    pixels = np.clip(digits.images[:limit] * (255.0 / 16.0), 0, 255).astype(np.uint8)
    for i, (img, label) in enumerate(zip(pixels, digits.target[:limit], strict=True)):
        path = folder / str(int(label)) / f"{i:04d}.png"
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        glyph = Image.fromarray(img).resize((GLYPH_SIZE, GLYPH_SIZE), Image.Resampling.BICUBIC)
        canvas = Image.new("L", (DIGIT_SIZE, DIGIT_SIZE), 0)
        margin = (DIGIT_SIZE - GLYPH_SIZE) // 2
        canvas.paste(glyph, (margin, margin))
        canvas.save(path)
    return len(pixels)


def _say(show: bool, *lines: str) -> None:
    if show:
        for line in lines:
            print(line, flush=True)


def _build(db: Any, *, max_epochs: int, time_budget: float, seed: int) -> dict[str, Any]:
    db.sql("COPY digits OPTIONS (if_exists='replace') FROM 'digits/'")
    built = db.sql(f"BUILD MODEL {SIMCLR_MODEL} USING SimCLR OPTIONS (max_epochs={max_epochs}, "
                   f"batch_size=64, time_budget={time_budget}, seed={seed}, overwrite=True) "
                   f"AS SELECT * FROM digits").df().iloc[0].to_dict()
    db.sql(f"BUILD MODEL {PIXELS_MODEL} USING Pixels OPTIONS (overwrite=True)")
    db.sql(f"CONVERT USING {SIMCLR_MODEL} OPTIONS (result_col='simclr') AS SELECT * FROM digits")
    db.sql(f"CONVERT USING {PIXELS_MODEL} OPTIONS (result_col='pixels') AS SELECT * FROM digits")
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in built.items()}


def _search(db: Any, query: str, top_k: int) -> list[dict[str, Any]]:
    found = db.sql(
        f"SEARCH IMAGE USING {SIMCLR_MODEL} OPTIONS (search_by='image', search_input='{query}', "
        f"emb_col='simclr', top_k={top_k + 1}) "
        f"AS SELECT image_path, label, simclr FROM digits").df()
    return [{"image_path": str(r.image_path), "label": int(r.label),
             "score": round(float(r.search_result), 4)}
            for r in found.itertuples() if r.image_path != query][:top_k]


def _precision(db: Any) -> dict[str, float]:
    df = db.sql("SELECT label, simclr, pixels FROM digits").df()
    labels = df["label"].to_numpy()
    return {col: round(precision_at_k(np.stack(df[col].to_numpy()), labels, k=10), 4)
            for col in ("simclr", "pixels")}


def run_demo(workdir: Path, *, max_epochs: int = 60, time_budget: float = 90.0,
             show: bool = True, query_label: int = 3, top_k: int = 8,
             seed: int = 0, limit: int | None = None) -> dict[str, Any]:
    """Run the demo in ``workdir`` (created if missing) and return what it did.

    Args:
        workdir: the workspace folder (digits PNGs, database, models, result image).
        max_epochs: SimCLR epochs (the time budget usually ends training first).
        time_budget: SimCLR training seconds.
        show: print progress bars and results.
        query_label: the digit searched for (its first image is the query).
        top_k: matches shown.
        seed: training seed.
        limit: use only the first ``limit`` digits (quick runs and tests).

    Returns:
        ``{"workdir", "images", "build", "query", "matches", "precision_at_10",
        "contact_sheet", "seconds"}``.
    """
    from pixql.workspace import Workspace

    started = time.perf_counter()
    workdir = Path(workdir).expanduser().resolve()
    images = write_digits(workdir / "digits", limit=limit)
    _say(show, f"wrote {images} digits (scikit-learn's 8x8, as {DIGIT_SIZE}x{DIGIT_SIZE} PNGs) "
               f"to {workdir / 'digits'}", f"training SimCLR for up to {time_budget:.0f} s ...")
    with Workspace(workdir, progress=show) as db:
        build = _build(db, max_epochs=max_epochs, time_budget=time_budget, seed=seed)
        query = db.sql(f"SELECT image_path FROM digits WHERE label = {int(query_label)} "
                       f"ORDER BY image_path LIMIT 1").fetchall()[0][0]
        matches = _search(db, query, top_k)
        precision = _precision(db)
    sheet = make_contact_sheet(
        [workdir / query] + [workdir / m["image_path"] for m in matches],
        [f"query ({query_label})"] + [f"#{i} label {m['label']}\n{m['score']:.3f}"
                                      for i, m in enumerate(matches, 1)],
        workdir / "demo_results.png", tile=112, columns=min(top_k + 1, 9),
        title=f"SimCLR: nearest digits to {query}")
    result = {"workdir": str(workdir), "images": images, "build": build, "query": query,
              "matches": matches, "precision_at_10": precision, "contact_sheet": str(sheet),
              "seconds": round(time.perf_counter() - started, 1)}
    _print_result(show, result)
    return result


def _print_result(show: bool, r: dict[str, Any]) -> None:
    b = r["build"]
    _say(show, f"trained {b.get('epochs')} epoch(s) on {r['images']} images in "
               f"{b.get('seconds')} s (final loss {b.get('final_loss')})",
         f"query {r['query']}; best matches:")
    for i, m in enumerate(r["matches"], 1):
        _say(show, f"  {i:2d}. {m['image_path']:<24} label {m['label']}  score {m['score']:.4f}")
    p = r["precision_at_10"]
    _say(show, f"precision@10 over all {r['images']} digits: SimCLR {p['simclr']:.3f}, "
               f"raw pixels {p['pixels']:.3f}",
         f"contact sheet: {r['contact_sheet']}  ({r['seconds']} s in all)")
