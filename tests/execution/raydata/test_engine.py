"""CONVERT with engine='ray' on a Ray started in this process (bound to 127.0.0.1): the
same column as a local CONVERT, the same on_error semantics, a worker crash retried,
bounded retries, and one clear error for what the workers cannot read (issue 13)."""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING, Any

import pytest

from pixql.errors import ExecutionError, ImageError, MissingDependencyError, ModelError
from tests.conftest import make_image_folder

if TYPE_CHECKING:
    from pathlib import Path


#: small actors: the pool leaves room on the 2-CPU Ray
RAY = "engine='ray', num_workers=2, cpus_per_worker=0.5"
CONVERT = "CONVERT USING {m} OPTIONS (result_col='{col}'{extra}) AS SELECT * FROM t"


@pytest.fixture
def t_ws(ws: Any, ray_local: Any) -> Any:
    """Table t: 5 images each of labels a and b, one NULL path, one missing file."""
    make_image_folder(ws.root / "imgs", per_class=5, shapes=("a", "b"))
    ws.sql("COPY t OPTIONS (if_exists='replace') FROM 'imgs/'")
    ws.sql("INSERT INTO t (image_path, label) VALUES (NULL, 'x'), ('imgs/gone.png', 'x')")
    ws.sql("BUILD MODEL q USING Pixels OPTIONS (image_size=8) AS SELECT * FROM t")
    return ws


def convert(ws: Any, col: str, extra: str = "", model: str = "q") -> Any:
    return ws.sql(CONVERT.format(m=model, col=col, extra=extra))


def rows(ws: Any, col: str) -> list[tuple[Any, ...]]:
    return ws.sql(f"SELECT image_path, {col}, {col}__pixql FROM t "
                  "ORDER BY image_path NULLS FIRST").fetchall()


def test_ray_binds_loopback_only(ray_local: Any) -> None:
    from pixql.distributed.cluster import is_loopback, node_addresses

    addresses = node_addresses(ray_local)
    assert addresses
    assert all(is_loopback(a) for a in addresses), addresses


def test_same_column_as_local_and_incremental(t_ws: Any) -> None:
    convert(t_ws, "e_local", ", on_error='null'")
    res = convert(t_ws, "e_ray", f", on_error='null', {RAY}")
    assert "computed by engine 'ray'" in res.message
    assert "2 rows could not be read and hold NULL" in res.message
    assert rows(t_ws, "e_ray") == rows(t_ws, "e_local")  # vectors, NULLs and provenance
    local, ray = (t_ws.catalog.find_column("t", c) for c in ("e_local", "e_ray"))
    assert (ray.model_version, ray.dim, ray.source_column) == (
        local.model_version, local.dim, local.source_column)
    shutil.copy(t_ws.root / "imgs/a/000.png", t_ws.root / "imgs/new.png")
    t_ws.sql("INSERT INTO t (image_path, label) VALUES ('imgs/new.png', 'a')")
    again = convert(t_ws, "e_ray", f", on_error='null', {RAY}")
    assert again.message.startswith("embedded 1 rows and reused 12")  # only the new row


def test_on_error_fail_names_the_path_and_changes_nothing(t_ws: Any) -> None:
    with pytest.raises(ImageError, match=r"gone\.png.*Nothing was changed"):
        convert(t_ws, "e", f", {RAY}")
    assert "e" not in t_ws.sql("SELECT * FROM t LIMIT 0").columns


def test_on_error_fail_counts_the_bad_values_as_local_does(t_ws: Any) -> None:
    """Locally the statement stops at the first batch holding a bad value (here the NULL
    path, in the first batch of 4; gone.png is in the third): Ray names the same ones."""
    errors = []
    for extra in ("", f", {RAY}"):
        with pytest.raises(ImageError) as got:
            convert(t_ws, "e", f", batch_size=4{extra}")
        errors.append(str(got.value))
    assert errors[0].startswith("cannot embed 1 value(s): NULL value.")
    assert errors[1] == errors[0]


def test_one_actor_pool_for_all_the_chunks(t_ws: Any, tmp_path: Path) -> None:
    import pixql.testing.faulty  # noqa: F401 - registers TestPixels

    log = tmp_path / "loads"
    t_ws.sql(f"BUILD MODEL c USING TestPixels OPTIONS (image_size=8, load_log='{log}') "
             "AS SELECT * FROM t")
    convert(t_ws, "e_local", ", on_error='null'", model="c")
    res = convert(t_ws, "e", f", on_error='null', chunk_size=3, {RAY}", model="c")
    assert "(4 chunk(s) committed)" in res.message
    actors = [f for f in log.iterdir() if not f.name.startswith(f"{os.getpid()}-")]
    assert 1 <= len(actors) <= 2  # 2 actors for the 4 chunks: each loaded the model once
    assert rows(t_ws, "e") == rows(t_ws, "e_local")


def test_worker_crash_is_retried_without_losing_rows(t_ws: Any, tmp_path: Path) -> None:
    import pixql.testing.faulty  # noqa: F401 - registers TestPixels

    marker = tmp_path / "crashed"
    t_ws.sql(f"BUILD MODEL c USING TestPixels OPTIONS (image_size=8, "
             f"crash_once_file='{marker}') AS SELECT * FROM t")
    res = convert(t_ws, "e", f", on_error='null', batch_size=4, {RAY}", model="c")
    assert marker.exists()  # a worker did die
    assert res.message.startswith("embedded 10 rows and reused 0")
    n = t_ws.sql("SELECT count(*), count(e), count(DISTINCT image_path) FROM t").fetchone()
    assert n == (12, 10, 11)


def test_crashing_every_time_ends_in_an_error_naming_rows(t_ws: Any) -> None:
    import pixql.testing.faulty  # noqa: F401 - registers TestPixels

    t_ws.sql("BUILD MODEL c USING TestPixels OPTIONS (image_size=8, crash_always=True) "
             "AS SELECT * FROM t")
    with pytest.raises(ExecutionError, match=r"failed on a chunk of 11 value\(s\) \(.*imgs/a/"
                       r"000\.png.*after 1 retries.*Nothing was changed"):
        convert(t_ws, "e", f", on_error='null', max_retries=1, {RAY}", model="c")
    assert "e" not in t_ws.sql("SELECT * FROM t LIMIT 0").columns


def test_paths_the_workers_cannot_read_are_one_error(t_ws: Any, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"cannot read 8 of the 8 sample paths.*worker_root"):
        convert(t_ws, "e", f", worker_root='{tmp_path / 'nowhere'}', model_transfer='ship',"
                f" {RAY}")


def test_artifact_not_matching_its_checksum_is_refused(t_ws: Any) -> None:
    rec = t_ws.catalog.get_model("q")
    (t_ws.root / rec.artifact_path / "stray.bin").write_bytes(b"x")
    for mode in ("shared", "auto"):
        with pytest.raises(ModelError, match="does not match the catalog's checksum"):
            convert(t_ws, "e", f", on_error='null', model_transfer='{mode}', {RAY}")


def test_environment_picks_the_engine(t_ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXQL_ENGINE", "ray")
    res = convert(t_ws, "e", ", on_error='null', num_workers=1, cpus_per_worker=0.5")
    assert "computed by engine 'ray'" in res.message
    assert "engine" not in convert(t_ws, "e2", ", on_error='null', engine='local'").message


def test_ray_not_installed_names_the_extra(ws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ws.sql("CREATE TABLE t AS SELECT 'x.png' AS image_path")
    ws.sql("BUILD MODEL q USING Pixels OPTIONS (image_size=8)")
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'pixql\[ray\]'"):
        convert(ws, "e", ", engine='ray'")


def test_a_bad_value_in_a_later_chunk_keeps_the_chunks_before(t_ws: Any) -> None:
    """Chunks of 4 of the 11 paths (gone.png last): the pipeline stops at the third chunk,
    the first two are committed, and a re-run embeds only what is left."""
    query = "AS SELECT * FROM t WHERE image_path IS NOT NULL"
    with pytest.raises(ImageError, match=r"gone\.png.*Nothing of this chunk was written\. "
                       r"The 8 row\(s\) embedded in earlier chunks were kept"):
        t_ws.sql(f"CONVERT USING q OPTIONS (result_col='e', chunk_size=4, {RAY}) {query}")
    assert t_ws.sql("SELECT count(e) FROM t").fetchone()[0] == 8
    res = t_ws.sql(f"CONVERT USING q OPTIONS (result_col='e', chunk_size=4, on_error='null', "
                   f"{RAY}) {query}")
    assert res.message.startswith("embedded 2 rows and reused 8 in t.e (1 chunk(s) committed)")


def test_an_unstored_convert_returns_the_vectors_a_local_one_does(t_ws: Any) -> None:
    query = "AS SELECT t.image_path FROM t, (SELECT 1 AS one) x ORDER BY 1 NULLS FIRST"
    got = [t_ws.sql(f"CONVERT USING q OPTIONS (result_col='e', on_error='null'{extra}) {query}")
           for extra in ("", f", {RAY}")]
    assert "not stored" in got[1].message
    assert got[1].fetchall() == got[0].fetchall()
