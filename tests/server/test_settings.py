"""ServerSettings: environment names, overrides, secrets kept out of dumps."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pixql.errors import ImageError
from pixql.server.settings import ServerSettings


def test_defaults() -> None:
    s = ServerSettings.from_env({})
    assert (s.host, s.port, s.max_prompts, s.max_images) == ("127.0.0.1", 9001, 8, 8)
    assert not s.auth_enabled
    assert not s.allow_file_input
    assert s.allow_url_input
    assert s.url_allow_hosts == []
    assert s.clip_version_id is None


def test_environment_names() -> None:
    env = {
        "PIXQL_API_KEYS": " k1, k2 ,,",
        "CLIP_MAX_BATCH_SIZE": "4",
        "CLIP_VERSION_ID": "ViT-B-32",
        "PIXQL_URL_ALLOW_HOSTS": "127.0.0.1,10.0.0.0/8",
        "PIXQL_CLIP_MODELS_DIR": "/models",
        "PRELOAD_MODELS": "clip/ViT-B-32",
        "PIXQL_PORT": "9100",
        "PIXQL_ALLOW_FILE_INPUT": "true",
    }
    s = ServerSettings.from_env(env)
    assert [k.get_secret_value() for k in s.api_keys] == ["k1", "k2"]
    assert s.max_prompts == 4
    assert s.clip_version_id == "ViT-B-32"
    assert s.port == 9100
    assert s.url_allow_hosts == ["127.0.0.1", "10.0.0.0/8"]
    assert s.clip_models_dir == Path("/models")
    assert s.preload_models == ["clip/ViT-B-32"]
    assert s.allow_file_input


def test_pixql_names_win_over_roboflow_names() -> None:
    s = ServerSettings.from_env({"PIXQL_MAX_PROMPTS": "3", "CLIP_MAX_BATCH_SIZE": "9"})
    assert s.max_prompts == 3


def test_overrides_win_and_none_means_unset() -> None:
    s = ServerSettings.from_env({"PIXQL_PORT": "9100"}, port=None, host="0.0.0.0",
                                api_keys=["cli-key"])
    assert s.port == 9100
    assert s.host == "0.0.0.0"
    assert s.auth_enabled


def test_keys_never_show_in_dumps() -> None:
    s = ServerSettings(api_keys=["s3cret"])
    assert "s3cret" not in repr(s)
    assert "s3cret" not in str(s.public_dict())
    assert s.public_dict()["auth_enabled"] is True


@pytest.mark.parametrize(
    "bad", [{"api_keys": [""]}, {"max_prompts": 0}, {"port": 70000}, {"unknown": 1}]
)
def test_invalid_settings(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ServerSettings(**bad)


def test_served_workspace_reads_urls_under_the_servers_rules():
    """pixql serve -w gives its workspace the server's URL rules (CONVERT over /sql)."""
    from pixql.remote.sources import UrlReader, UrlSettings
    from pixql.server.settings import url_settings

    server = ServerSettings(url_allow_hosts=["127.0.0.1"], url_max_bytes=1234,
                            allow_url_input=False)
    got = UrlSettings.from_env({}, **url_settings(server))
    assert (got.url_allow_hosts, got.url_max_bytes, got.enabled) == (("127.0.0.1",), 1234,
                                                                       False)
    with pytest.raises(ImageError, match="disabled"):
        UrlReader(got).read("http://127.0.0.1/a.png")
