"""The URL reader's settings and rules without a network: schemes, settings from the
environment, object-store endpoints vetted like http hosts, version signatures."""

from __future__ import annotations

import pytest

from pixql.errors import ImageError, OptionError
from pixql.remote.sources import UNREACHABLE, UrlReader, UrlSettings, is_url, token_hash


@pytest.mark.parametrize(("value", "url"), [
    ("http://h/a.png", True), ("HTTPS://h/a.png", True), ("s3://b/k.png", True),
    ("gs://b/k.png", True), ("imgs/a.png", False), ("/abs/a.png", False),
    ("file:///a.png", False), ("ftp://h/a.png", False), (None, False), (3, False)])
def test_is_url(value: object, url: bool) -> None:
    assert is_url(value) is url


def test_settings_from_env_keep_the_servers_names() -> None:
    env = {"PIXQL_URL_ALLOW_HOSTS": "127.0.0.1, 10.0.0.0/8", "PIXQL_URL_MAX_BYTES": "1000",
           "PIXQL_URL_TIMEOUT_S": "2.5", "PIXQL_S3_ENDPOINT_URL": "http://minio:9000",
           "PIXQL_S3_ANON": "true"}
    s = UrlSettings.from_env(env, url_max_redirects=1)
    assert s.url_allow_hosts == ("127.0.0.1", "10.0.0.0/8")
    assert (s.url_max_bytes, s.url_timeout_s, s.url_max_redirects) == (1000, 2.5, 1)
    assert (s.s3_endpoint_url, s.s3_anon) == ("http://minio:9000", True)
    assert UrlSettings.from_env(env, url_allow_hosts="a,b").url_allow_hosts == ("a", "b")
    with pytest.raises(OptionError, match="PIXQL_URL_MAX_BYTES must be a number"):
        UrlSettings.from_env({"PIXQL_URL_MAX_BYTES": "lots"})
    with pytest.raises(OptionError, match=r"unknown URL setting.*url_alow_hosts"):
        UrlSettings.from_env({}, url_alow_hosts=["x"])


@pytest.mark.parametrize(("endpoint", "reason"), [
    ("http://127.0.0.1:9000", "loopback"), ("http://169.254.169.254", "cloud metadata"),
    ("http://10.1.2.3:9000", "private"), ("http://metadata.google.internal", "not allowed"),
    ("ftp://127.0.0.1", "must be http")])
def test_object_store_endpoints_are_vetted(endpoint: str, reason: str) -> None:
    reader = UrlReader(UrlSettings(s3_endpoint_url=endpoint, gcs_endpoint_url=endpoint))
    for protocol in ("s3", "gs"):
        with pytest.raises(ImageError, match=reason):
            reader.storage_options(protocol)


def test_allow_listed_endpoint_and_options() -> None:
    reader = UrlReader(UrlSettings(url_allow_hosts=("127.0.0.1",), s3_anon=True,
                                   s3_endpoint_url="http://127.0.0.1:9000", gcs_anon=True,
                                   storage_options={"s3": {"default_block_size": 1024}}))
    assert reader.storage_options("s3") == {"endpoint_url": "http://127.0.0.1:9000",
                                            "anon": True, "default_block_size": 1024}
    assert reader.storage_options("gs") == {"token": "anon"}


def test_disabled_and_unreachable() -> None:
    reader = UrlReader(UrlSettings(enabled=False))
    with pytest.raises(ImageError, match="disabled"):
        reader.read("http://example.com/a.png")
    assert UrlReader(UrlSettings()).signature("http://127.0.0.1:9/a.png") == UNREACHABLE


def test_token_hash_is_stable_and_63_bits() -> None:
    assert token_hash(None, "") == 0
    assert token_hash('"abc"', "Tue, 01 Dec 2026") == token_hash('"abc"', "Tue, 01 Dec 2026")
    assert token_hash('"abc"') != token_hash('"abd"')
    assert 0 < token_hash("x") < 2**63
