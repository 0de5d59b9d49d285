"""CONVERT of URL values (issue 13): http(s) through the SSRF-safe fetcher (a real HTTP
server on 127.0.0.1, refused until allow-listed), s3 and gs through fsspec on a real moto
server and a real GCS emulator (moto[server] and gcp-storage-emulator are in [dev]),
on_error for a refused host and a 404, and per-row staleness from ETag / Last-Modified /
size (a changed object re-embedded, an unchanged one reused)."""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING, Any

import pytest

from pixql.errors import ImageError
from tests.conftest import make_image_folder
from tests.remote.servers import gcs_emulator, moto_s3, serve_folder
from tests.remote.workspaces import open_ws, url_table

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CONVERT = "CONVERT USING q OPTIONS (result_col='e'{extra}) AS SELECT * FROM {table}"
LOOPBACK = {"url_allow_hosts": ["127.0.0.1"], "url_timeout_s": 5.0}


def vectors(ws: Any, table: str) -> list[tuple[str, Any]]:
    got = ws.sql(f"SELECT label, filename, e FROM (SELECT label, regexp_extract(image_path, "
                 f"'[^/]+$') AS filename, e FROM {table}) ORDER BY label, filename").fetchall()
    return [(f"{label}/{name}", e) for label, name, e in got]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The workspace folder (its imgs/ served over HTTP on 127.0.0.1) and the base URL."""
    root = tmp_path / "ws"
    make_image_folder(root / "imgs", per_class=2, shapes=("a", "b"))
    with serve_folder(root / "imgs") as base:
        yield root, base


def test_loopback_url_is_refused_without_allow_listing(site: tuple[Path, str]) -> None:
    root, base = site
    ws = open_ws(root)
    url_table(ws, base)
    with pytest.raises(ImageError, match=r"127\.0\.0\.1.*loopback address.*url_allow_hosts"
                                         r".*Nothing was changed") as err:
        ws.sql(CONVERT.format(extra="", table="u"))
    assert f"{base}/a/000.png" in str(err.value)  # names the row's value
    assert "e" not in ws.sql("SELECT * FROM u LIMIT 0").columns
    ws.close()


def test_allow_listed_urls_embed_like_the_files(site: tuple[Path, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root, base = site
    monkeypatch.setenv("PIXQL_URL_ALLOW_HOSTS", "127.0.0.1")  # the server's variable
    ws = open_ws(root)
    url_table(ws, base)
    ws.sql(CONVERT.format(extra="", table="t"))
    res = ws.sql(CONVERT.format(extra="", table="u"))
    assert res.message.startswith("embedded 4 rows and reused 0")
    assert vectors(ws, "u") == vectors(ws, "t")
    top = ws.sql(f"SEARCH IMAGE USING q OPTIONS (search_by='image', search_input="
                 f"'{base}/b/001.png', emb_col='e', top_k=1) AS SELECT * FROM u").fetchall()
    assert top[0][0] == f"{base}/b/001.png"  # SEARCH reads a URL input the same way
    ws.close()


@pytest.mark.parametrize("on_error", ["fail", "null"])
def test_a_404_follows_on_error(site: tuple[Path, str], on_error: str) -> None:
    root, base = site
    ws = open_ws(root, **LOOPBACK)
    url_table(ws, base, extra=(f"{base}/gone.png",))
    query = CONVERT.format(extra=f", on_error='{on_error}'", table="u")
    if on_error == "fail":
        with pytest.raises(ImageError, match=r"gone\.png: .*HTTP 404.*Nothing was changed"):
            ws.sql(query)
        return
    res = ws.sql(query)
    assert "embedded 4 rows" in res.message
    assert "1 rows could not be read and hold NULL" in res.message
    assert ws.sql("SELECT count(*) FROM u WHERE e IS NULL").fetchone() == (1,)
    again = ws.sql(query)  # still 404: not fetched again (as a missing file)
    assert again.message.startswith("embedded 0 rows and reused 5")
    ws.close()


@pytest.mark.parametrize("validators", [True, False])
def test_changed_object_is_re_embedded_and_unchanged_ones_reused(
        tmp_path: Path, validators: bool) -> None:
    root = tmp_path / "ws"
    make_image_folder(root / "imgs", per_class=2, shapes=("a", "b"))
    with serve_folder(root / "imgs", validators=validators) as base:
        ws = open_ws(root, **LOOPBACK)
        url_table(ws, base)
        assert ws.sql(CONVERT.format(extra="", table="u")).message.startswith("embedded 4")
        assert ws.sql(CONVERT.format(extra="", table="u")).message.startswith(
            "embedded 0 rows and reused 4")
        before = dict(vectors(ws, "u"))
        target = root / "imgs" / "a" / "000.png"
        shutil.copy(root / "imgs" / "b" / "001.png", target)  # other pixels, other size
        st = target.stat()
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        res = ws.sql(CONVERT.format(extra="", table="u"))
        after = dict(vectors(ws, "u"))
        ws.close()
    assert res.message.startswith("embedded 1 rows and reused 3")
    assert after["a/000.png"] == after["b/001.png"] != before["a/000.png"]
    assert {k: v for k, v in after.items() if k != "a/000.png"} == {
        k: v for k, v in before.items() if k != "a/000.png"}


def test_missing_extra_is_named(site: tuple[Path, str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    root, base = site
    ws = open_ws(root, **LOOPBACK)
    url_table(ws, base)
    monkeypatch.setitem(sys.modules, "httpx", None)  # as if httpx were not installed
    with pytest.raises(ImageError, match=r"needs httpx.*pip install 'pixql\[cloud\]'"):
        ws.sql(CONVERT.format(extra="", table="u"))
    monkeypatch.setitem(sys.modules, "s3fs", None)
    ws.sql("CREATE TABLE s AS SELECT 's3://b/a.png' AS image_path")
    res = ws.sql(CONVERT.format(extra=", on_error='null'", table="s"))
    assert "1 rows could not be read" in res.message
    with pytest.raises(ImageError, match=r"s3://b/a\.png: reading s3:// URLs needs s3fs"):
        ws.sql(CONVERT.format(extra=", refresh='all'", table="s"))
    ws.close()


# ---------------------------------------------------------------------------------- S3
@pytest.fixture
def s3(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A moto S3 server on 127.0.0.1 with bucket ``pics`` holding imgs/ of a workspace."""
    import boto3  # s3fs and moto[server] are in [dev]: a missing one fails, not skips

    root = tmp_path / "ws"
    files = make_image_folder(root / "imgs", per_class=2, shapes=("a", "b"))
    with moto_s3() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        client.create_bucket(Bucket="pics")
        for f in files:
            client.upload_file(str(f), "pics", f.relative_to(root / "imgs").as_posix())
        yield endpoint, root


@pytest.fixture
def aws_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                       ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(key, value)


@pytest.mark.usefixtures("aws_keys")
def test_s3_endpoint_must_be_allow_listed(s3: tuple[str, Path]) -> None:
    endpoint, root = s3
    ws = open_ws(root, s3_endpoint_url=endpoint)
    url_table(ws, "s3://pics")
    with pytest.raises(ImageError, match=r"s3://pics/a/000\.png: .*loopback address"):
        ws.sql(CONVERT.format(extra="", table="u"))
    ws.close()


@pytest.mark.usefixtures("aws_keys")
def test_s3_objects_embed_like_the_files_and_changes_are_noticed(
        s3: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    endpoint, root = s3
    monkeypatch.setenv("PIXQL_S3_ENDPOINT_URL", endpoint)
    ws = open_ws(root, **LOOPBACK)
    url_table(ws, "s3://pics", extra=("s3://pics/nothing.png",))
    ws.sql(CONVERT.format(extra="", table="t"))
    res = ws.sql(CONVERT.format(extra=", on_error='null'", table="u"))
    assert res.message.startswith("embedded 4 rows")
    assert "1 rows could not be read" in res.message
    assert vectors(ws, "u")[:4] == vectors(ws, "t")
    client = boto3.client("s3", endpoint_url=endpoint)
    client.upload_file(str(root / "imgs/b/001.png"), "pics", "a/000.png")  # a new ETag
    again = ws.sql(CONVERT.format(extra=", on_error='null'", table="u"))
    assert again.message.startswith("embedded 1 rows and reused 4")
    got = dict(vectors(ws, "u"))
    assert got["a/000.png"] == got["b/001.png"]
    ws.close()


# ---------------------------------------------------------------------------------- GCS
def test_gcs_objects_embed_like_the_files_and_changes_are_noticed(tmp_path: Path) -> None:
    import gcsfs.core as gcsfs  # gcsfs and gcp-storage-emulator are in [dev]
    root = tmp_path / "ws"
    files = make_image_folder(root / "imgs", per_class=2, shapes=("a", "b"))
    with gcs_emulator("pics") as endpoint:
        fs = gcsfs.GCSFileSystem(endpoint_url=endpoint, token="anon")
        for f in files:
            fs.put_file(str(f), "pics/" + f.relative_to(root / "imgs").as_posix())
        refused = open_ws(root, gcs_endpoint_url=endpoint, gcs_anon=True)
        url_table(refused, "gs://pics")
        with pytest.raises(ImageError, match=r"gs://pics/a/000\.png: .*loopback address"):
            refused.sql(CONVERT.format(extra="", table="u"))
        refused.close()
        ws = open_ws(root, gcs_endpoint_url=endpoint, gcs_anon=True, **LOOPBACK)
        ws.sql(CONVERT.format(extra="", table="t"))
        url_table(ws, "gs://pics", extra=("gs://pics/nothing.png",))
        res = ws.sql(CONVERT.format(extra=", on_error='null'", table="u"))
        assert res.message.startswith("embedded 4 rows")
        assert "1 rows could not be read" in res.message
        assert vectors(ws, "u")[:4] == vectors(ws, "t")
        assert ws.sql(CONVERT.format(extra=", on_error='null'", table="u")).message.startswith(
            "embedded 0 rows and reused 5")
        fs.put_file(str(root / "imgs/b/001.png"), "pics/a/000.png")  # a new generation
        again = ws.sql(CONVERT.format(extra=", on_error='null'", table="u"))
        got = dict(vectors(ws, "u"))
        ws.close()
    assert again.message.startswith("embedded 1 rows and reused 4")
    assert got["a/000.png"] == got["b/001.png"]
