"""Per-row provenance, incremental and chunked CONVERT, and SEARCH that never mixes model
versions (issue 12)."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

import pixql
from pixql.errors import CatalogError, ImageError
from pixql.execution import embedding
from tests.conftest import make_image_folder

if TYPE_CHECKING:
    from pathlib import Path

BUILD = "BUILD MODEL q USING Pixels OPTIONS (image_size=8{extra}) AS SELECT * FROM t"
CONVERT = "CONVERT USING q OPTIONS (result_col='e'{extra}) AS SELECT * FROM t{where}"
SEARCH = ("SEARCH IMAGE USING q OPTIONS (search_by='image', search_input='{q}', emb_col='e', "
          "top_k={k}) AS SELECT * FROM t{where}")


def convert(ws: Any, extra: str = "", where: str = "") -> Any:
    return ws.sql(CONVERT.format(extra=extra, where=where))


def search(ws: Any, q: str = "imgs/b/003.png", k: int = 8, where: str = "") -> Any:
    return ws.sql(SEARCH.format(q=q, k=k, where=where))


def column(ws: Any, table: str = "t") -> list[tuple[Any, ...]]:
    return ws.sql(f"SELECT image_path, e FROM {table} ORDER BY image_path").fetchall()


@pytest.fixture
def t_ws(ws: Any) -> Any:
    """Table t: 6 images each of labels a and b (imgs/<label>/<i>.png)."""
    make_image_folder(ws.root / "imgs", per_class=6, shapes=("a", "b"))
    ws.sql("COPY t OPTIONS (if_exists='replace', image_col='image_path') FROM 'imgs/'")
    ws.sql(BUILD.format(extra=""))
    return ws


def test_issue_reproduction_never_ranks_stale_rows(t_ws: Any) -> None:
    convert(t_ws)
    t_ws.sql(BUILD.format(extra=", center=False, overwrite=True"))
    convert(t_ws, where=" WHERE label = 'a'")
    res = search(t_ws)
    assert set(res.df()["label"]) == {"a"}  # the b rows are stale: left out, not ranked
    assert "left out 6 row(s) whose embeddings are stale" in res.message
    assert "run CONVERT USING q" in res.message
    assert "to embed 6 row(s)" in res.message
    assert "e__pixql" not in res.columns
    convert(t_ws)  # the next CONVERT embeds the b rows alone
    top = search(t_ws).df()
    assert top["image_path"][0] == "imgs/b/003.png"
    assert top["search_result"][0] == pytest.approx(1.0, abs=1e-6)
    assert search(t_ws).message == ""


def test_search_where_only_stale_rows_fails_with_the_fix(t_ws: Any) -> None:
    convert(t_ws)
    t_ws.sql(BUILD.format(extra=", center=False, overwrite=True"))
    convert(t_ws, where=" WHERE label = 'a'")
    with pytest.raises(CatalogError, match=r"6 stale.*re-run CONVERT"):
        search(t_ws, where=" WHERE label = 'b'")


def test_general_path_leaves_out_stale_rows_too(t_ws: Any) -> None:
    convert(t_ws)
    t_ws.sql(BUILD.format(extra=", center=False, overwrite=True"))
    convert(t_ws, where=" WHERE label = 'a'")
    res = t_ws.sql("SEARCH IMAGE USING q OPTIONS (search_by='image', search_input="
                   "'imgs/a/001.png', emb_col='e', top_k=None) AS SELECT * FROM t ORDER BY "
                   "image_path DESC")
    assert set(res.df()["label"]) == {"a"}
    assert "6 row(s) whose embeddings are stale" in res.message
    with pytest.raises(CatalogError, match="provenance column"):
        t_ws.sql("SEARCH IMAGE USING q OPTIONS (search_by='image', search_input="
                 "'imgs/a/001.png', emb_col='e') AS SELECT image_path, e FROM t ORDER BY 1")


def test_rows_inserted_after_convert_are_reported_then_embedded_alone(t_ws: Any) -> None:
    convert(t_ws)
    shutil.copy(t_ws.root / "imgs/a/000.png", t_ws.root / "imgs/new.png")
    t_ws.sql("INSERT INTO t (image_path, filename, label) VALUES ('imgs/new.png', 'new.png', "
             "'a')")
    res = search(t_ws)
    assert "1 row(s) not embedded yet" in res.message
    assert "imgs/new.png" not in set(res.df()["image_path"])
    out = convert(t_ws)
    assert out.message.startswith("embedded 1 rows and reused 12")


def test_incremental_equals_full_convert_bit_for_bit(t_ws: Any, tmp_path: Path) -> None:
    convert(t_ws, where=" WHERE label = 'b'")
    t_ws.sql(BUILD.format(extra=", center=False, overwrite=True"))
    convert(t_ws, where=" WHERE label = 'a'")
    t_ws.sql("UPDATE t SET image_path = 'imgs/b/000.png' WHERE image_path = 'imgs/a/005.png'")
    out = convert(t_ws)  # b rows: stale version; the moved row: changed path
    assert "reused 5" in out.message  # a/000..a/004 were current
    incremental = column(t_ws)
    full = convert(t_ws, extra=", refresh='all'")
    assert "reused 0" in full.message
    assert column(t_ws) == incremental  # the same float32 values, bit for bit


def test_changed_file_is_re_embedded(t_ws: Any) -> None:
    convert(t_ws)
    target = t_ws.root / "imgs/a/002.png"
    shutil.copy(t_ws.root / "imgs/b/004.png", target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # size may not change
    out = convert(t_ws)
    assert out.message.startswith("embedded 1 rows and reused 11")
    top = search(t_ws, q="imgs/b/004.png", k=2).df()
    assert set(top["image_path"]) == {"imgs/b/004.png", "imgs/a/002.png"}


def test_rerun_embeds_nothing_and_result_is_lazy(t_ws: Any) -> None:
    first = convert(t_ws)
    assert first.message.startswith("embedded 12 rows and reused 0")
    again = convert(t_ws)
    assert again.message.startswith("embedded 0 rows and reused 12")
    assert again._table is None  # nothing fetched yet
    assert len(again) == 12
    assert "[12 rows x 4 columns]" in again.render()
    assert again._table is None  # printing fetched only the head
    assert again.columns == ["image_path", "filename", "label", "e"]
    assert again.table.num_rows == 12


def test_embedder_sees_one_chunk_at_a_time(t_ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = embedding.embed_values

    def spy(embedder: Any, values: Any, **kw: Any) -> Any:
        seen.append(len(values))
        return real(embedder, values, **kw)

    monkeypatch.setattr("pixql.execution.compute.embed_values", spy)
    out = convert(t_ws, extra=", chunk_size=5")
    assert seen == [5, 5, 2]
    assert "3 chunk(s) committed" in out.message


def test_failing_chunk_keeps_the_committed_ones(t_ws: Any) -> None:
    (t_ws.root / "imgs/b/005.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match="were kept") as info:
        convert(t_ws, extra=", chunk_size=4")
    assert "Nothing was changed" not in str(info.value)
    done = t_ws.sql("SELECT count(e) FROM t").fetchone()[0]
    assert done == 8  # two whole chunks, nothing of the third
    (t_ws.root / "imgs/b/005.png").unlink()
    shutil.copy(t_ws.root / "imgs/b/004.png", t_ws.root / "imgs/b/005.png")
    assert convert(t_ws).message.startswith("embedded 4 rows and reused 8")


def test_workspace_from_0_1_keeps_working(t_ws: Any) -> None:
    """A 0.1 column has no provenance companion: treated as one version, migrated by the
    next CONVERT."""
    convert(t_ws)
    t_ws.sql("ALTER TABLE t DROP COLUMN e__pixql")  # what 0.1 left behind
    assert search(t_ws, k=1).df()["image_path"][0] == "imgs/b/003.png"
    out = convert(t_ws)
    assert out.message.startswith("embedded 0 rows and reused 12")
    assert t_ws.sql("SELECT count(e__pixql) FROM t").fetchone()[0] == 12
    t_ws.sql("ALTER TABLE t DROP COLUMN e__pixql")
    t_ws.sql(BUILD.format(extra=", center=False, overwrite=True"))
    with pytest.raises(CatalogError, match="re-run CONVERT"):
        search(t_ws)
    assert convert(t_ws).message.startswith("embedded 12 rows")


def test_new_dimension_replaces_the_column(t_ws: Any) -> None:
    convert(t_ws)
    t_ws.sql(BUILD.format(extra=", overwrite=True").replace("image_size=8", "image_size=4"))
    out = convert(t_ws, where=" WHERE label = 'a'")
    assert out.message.startswith("embedded 6 rows")
    res = search(t_ws, q="imgs/a/001.png")
    assert "6 row(s) not embedded yet" in res.message
    assert t_ws.sql("SELECT typeof(e) FROM t LIMIT 1").fetchone()[0] == "FLOAT[16]"


def test_text_column_change_makes_row_stale(ws: Any) -> None:
    pytest.importorskip("open_clip")
    from pixql.testing import make_tiny_clip

    folder = make_tiny_clip(ws.root / "tiny")
    ws.sql(f"BUILD MODEL clip USING CLIP OPTIONS (path='{folder}')")
    ws.sql("CREATE TABLE c AS SELECT range AS id, 'text ' || range AS text FROM range(20)")
    conv = ("CONVERT USING clip OPTIONS (convert_type='text', result_col='e') "
            "AS SELECT * FROM c")
    ws.sql(conv)
    ws.sql("UPDATE c SET text = 'changed' WHERE id = 3")
    res = ws.sql("SEARCH IMAGE USING clip OPTIONS (search_by='text', search_input='text 1', "
                 "emb_col='e', top_k=None) AS SELECT * FROM c")
    assert len(res) == 19
    assert "1 row(s) whose embeddings are stale" in res.message
    assert ws.sql(conv).message.startswith("embedded 1 rows and reused 19")


def test_vectors_match_a_workspace_converted_in_one_go(tmp_path: Path) -> None:
    """Chunks of any size give the column of a single-chunk run."""
    got = []
    for chunk in (3, 100):
        with pixql.connect(tmp_path / f"ws{chunk}", progress=False) as db:
            make_image_folder(db.root / "imgs", per_class=5, shapes=("a", "b"))
            db.sql("COPY t OPTIONS (if_exists='replace') FROM 'imgs/'")
            db.sql(BUILD.format(extra=""))
            convert(db, extra=f", chunk_size={chunk}")
            got.append(column(db))
    assert got[0] == got[1]
    assert np.asarray([e for _, e in got[0]]).shape == (10, 64)


def test_work_list_pages_cover_every_row_once(t_ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from pixql.execution import incremental

    monkeypatch.setattr(incremental, "PAGE_VALUES", 4)
    t_ws.sql("INSERT INTO t SELECT * FROM t WHERE label = 'a'")  # rows sharing a path
    t_ws.sql("INSERT INTO t (image_path, label) VALUES (NULL, 'a')")
    out = convert(t_ws, extra=", chunk_size=5, on_error='null'")
    assert out.message.startswith("embedded 18 rows and reused 0")
    assert "1 rows could not be read" in out.message
    assert t_ws.sql("SELECT count(e) FROM t").fetchone()[0] == 18
    assert convert(t_ws).message.startswith("embedded 0 rows and reused 19")


def test_failing_chunk_inside_a_transaction_is_the_users_to_roll_back(t_ws: Any) -> None:
    (t_ws.root / "imgs/b/005.png").write_bytes(b"not a png")
    t_ws.sql("BEGIN")
    with pytest.raises(ImageError, match="your open transaction"):
        convert(t_ws, extra=", chunk_size=4")
    t_ws.sql("ROLLBACK")
    cols = {c for (c,) in t_ws.sql("SELECT column_name FROM duckdb_columns() "
                                   "WHERE table_name = 't'").fetchall()}
    assert "e" not in cols
