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

Then it does what a real search meets: it writes one *transformed* copy of every digit
(shifted, rotated, shrunk or noisy, :mod:`pixql.demo_queries`) under ``<workdir>/queries/``,
CONVERTs them with both models and searches the clean digits with them. It prints
precision@10 of SimCLR and of the raw-pixel baseline on clean and on transformed queries
(pixels match a digit only where it overlaps itself; the contrastive model, trained with
shifts, zooms, rotations and noise, holds), and draws ``<workdir>/demo_results.png``: a
transformed query with SimCLR's best matches in the first row and raw pixels' in the second.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from pixql.contact_sheet import make_contact_sheet
from pixql.demo_queries import TRANSFORMS, precision_against, transform_of, write_queries
from pixql.errors import MissingDependencyError

#: side of the PNGs the 8x8 digits are written as (MNIST's size) ...
DIGIT_SIZE = 28
#: ... with the digit enlarged to this side and centred on black, as in MNIST
GLYPH_SIZE = 20
#: models the demo builds
SIMCLR_MODEL = "demo_simclr"
PIXELS_MODEL = "demo_pixels"
#: model → the column its embeddings are stored in (digits and queries tables)
COLUMNS = {SIMCLR_MODEL: "simclr", PIXELS_MODEL: "pixels"}
#: the transformation of the query drawn on the contact sheet
SHOWN_TRANSFORM = "shifted"


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
    db.sql("COPY queries OPTIONS (if_exists='replace') FROM 'queries/'")
    built = db.sql(f"BUILD MODEL {SIMCLR_MODEL} USING SimCLR OPTIONS (max_epochs={max_epochs}, "
                   f"batch_size=64, time_budget={time_budget}, seed={seed}, overwrite=True) "
                   f"AS SELECT * FROM digits").df().iloc[0].to_dict()
    db.sql(f"BUILD MODEL {PIXELS_MODEL} USING Pixels OPTIONS (overwrite=True)")
    for model, column in COLUMNS.items():
        for table in ("digits", "queries"):
            db.sql(f"CONVERT USING {model} OPTIONS (result_col='{column}') "
                   f"AS SELECT * FROM {table}")
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in built.items()}


def _search(db: Any, model: str, query: str, top_k: int, skip: str) -> list[dict[str, Any]]:
    """The ``top_k`` best clean digits for ``query`` (``skip``, its original, left out)."""
    column = COLUMNS[model]
    found = db.sql(
        f"SEARCH IMAGE USING {model} OPTIONS (search_by='image', search_input='{query}', "
        f"emb_col='{column}', top_k={top_k + 2}) "
        f"AS SELECT image_path, label, {column} FROM digits").df()
    return [{"image_path": str(r.image_path), "label": int(r.label),
             "score": round(float(r.search_result), 4)}
            for r in found.itertuples() if r.image_path not in (query, skip)][:top_k]


def _source(query_path: str) -> str:
    """``queries/3/0013_rotated.png`` → ``digits/3/0013.png`` (the digit it was made from)."""
    label, name = query_path.split("/")[-2:]
    return f"digits/{label}/{name.split('_', 1)[0]}.png"


def _precision(db: Any) -> dict[str, dict[str, float]]:
    """precision@10 per model: ``clean`` (digits among digits), every transformation
    (transformed queries among the clean digits, their originals left out) and ``transformed``
    (all transformed queries)."""
    digits = db.sql("SELECT image_path, label, simclr, pixels FROM digits").df()
    queries = db.sql("SELECT image_path, label, simclr, pixels FROM queries").df()
    row_of = {p: i for i, p in enumerate(digits["image_path"])}
    exclude = np.array([row_of.get(_source(p), -1) for p in queries["image_path"]])
    kinds = np.array([transform_of(p) for p in queries["image_path"]])
    out: dict[str, dict[str, float]] = {}
    for column in COLUMNS.values():
        gallery = np.stack(digits[column].to_numpy())
        vecs = np.stack(queries[column].to_numpy())
        scores = {"clean": precision_at_k(gallery, digits["label"].to_numpy(), k=10)}
        for kind in [*TRANSFORMS, "transformed"]:
            rows = kinds == kind if kind != "transformed" else np.ones(len(kinds), bool)
            if rows.any():
                scores[kind] = precision_against(
                    vecs[rows], queries["label"].to_numpy()[rows], gallery,
                    digits["label"].to_numpy(), exclude=exclude[rows], k=10)
        out[column] = {k: round(v, 4) for k, v in scores.items()}
    return out


def _pick_query(db: Any, label: int) -> str:
    """The first transformed query of ``label`` made with :data:`SHOWN_TRANSFORM`."""
    rows = db.sql(f"SELECT image_path FROM queries WHERE label = {int(label)} "
                  f"ORDER BY image_path").fetchall()
    paths = [str(r[0]) for r in rows]
    shown = [p for p in paths if transform_of(p) == SHOWN_TRANSFORM]
    return (shown or paths)[0]


def run_demo(workdir: Path, *, max_epochs: int = 60, time_budget: float = 90.0,
             show: bool = True, query_label: int = 3, top_k: int = 8,
             seed: int = 0, limit: int | None = None) -> dict[str, Any]:
    """Run the demo in ``workdir`` (created if missing) and return what it did.

    Args:
        workdir: the workspace folder (digits PNGs, database, models, result image).
        max_epochs: SimCLR epochs (the time budget usually ends training first).
        time_budget: SimCLR training seconds.
        show: print progress bars and results.
        query_label: the digit searched for (its first shifted copy is the query).
        top_k: matches shown per model.
        seed: training (and query transformation) seed.
        limit: use only the first ``limit`` digits (quick runs and tests).

    Returns:
        ``{"workdir", "images", "build", "query", "matches", "pixel_matches",
        "precision_at_10", "contact_sheet", "seconds"}``; ``precision_at_10`` maps
        ``simclr``/``pixels`` to their scores on ``clean`` digits, on each transformation and
        on all ``transformed`` queries.
    """
    from pixql.workspace import Workspace

    started = time.perf_counter()
    workdir = Path(workdir).expanduser().resolve()
    images = write_digits(workdir / "digits", limit=limit)
    write_queries(workdir / "digits", workdir / "queries", seed=seed)
    _say(show, f"wrote {images} digits (scikit-learn's 8x8, as {DIGIT_SIZE}x{DIGIT_SIZE} PNGs) "
               f"to {workdir / 'digits'}, and a shifted, rotated, shrunk or noisy copy of each "
               f"to {workdir / 'queries'}", f"training SimCLR for up to {time_budget:.0f} s ...")
    with Workspace(workdir, progress=show) as db:
        build = _build(db, max_epochs=max_epochs, time_budget=time_budget, seed=seed)
        query = _pick_query(db, query_label)
        matches = _search(db, SIMCLR_MODEL, query, top_k, _source(query))
        pixel_matches = _search(db, PIXELS_MODEL, query, top_k, _source(query))
        precision = _precision(db)
    sheet = _draw(workdir, query, matches, pixel_matches, query_label)
    result = {"workdir": str(workdir), "images": images, "build": build, "query": query,
              "matches": matches, "pixel_matches": pixel_matches,
              "precision_at_10": precision, "contact_sheet": str(sheet),
              "seconds": round(time.perf_counter() - started, 1)}
    _print_result(show, result)
    return result


def _draw(workdir: Path, query: str, matches: list[dict[str, Any]],
          pixel_matches: list[dict[str, Any]], label: int) -> Path:
    """Row 1: the query and SimCLR's matches; row 2: the query and raw pixels' matches."""
    paths: list[Path] = []
    captions: list[str] = []
    for name, found in (("SimCLR", matches), ("raw pixels", pixel_matches)):
        paths += [workdir / query] + [workdir / m["image_path"] for m in found]
        captions += [f"{transform_of(query)} {label}\n{name}"] + [
            f"#{i} label {m['label']}\n{m['score']:.3f}" for i, m in enumerate(found, 1)]
    return make_contact_sheet(paths, captions, workdir / "demo_results.png", tile=112,
                              columns=len(matches) + 1,
                              title=f"{query}: SimCLR (top row) vs raw pixels (bottom row)")


def _print_result(show: bool, r: dict[str, Any]) -> None:
    b = r["build"]
    _say(show, f"trained {b.get('epochs')} epoch(s) on {r['images']} images in "
               f"{b.get('seconds')} s (final loss {b.get('final_loss')})",
         f"query {r['query']} (a {transform_of(r['query'])} copy); best matches:")
    for i, (m, p) in enumerate(zip(r["matches"], r["pixel_matches"], strict=False), 1):
        _say(show, f"  {i:2d}. SimCLR {m['image_path']:<20} label {m['label']}  "
                   f"{m['score']:.3f}   raw pixels {p['image_path']:<20} label {p['label']}  "
                   f"{p['score']:.3f}")
    p = r["precision_at_10"]
    kinds = list(p["simclr"])
    _say(show, f"precision@10 ({r['images']} digits; transformed queries search the clean "
               f"digits, their own original left out):",
         "  " + f"{'queries':<12}" + "".join(f"{k:>12}" for k in kinds))
    for column, name in (("simclr", "SimCLR"), ("pixels", "raw pixels")):
        _say(show, "  " + f"{name:<12}" + "".join(f"{p[column][k]:>12.3f}" for k in kinds))
    _say(show, f"contact sheet: {r['contact_sheet']}  ({r['seconds']} s in all)")
