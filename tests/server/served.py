"""A served workspace for the ThanoSQL and PostgreSQL client tests: a real workspace folder
with six small images under ``photos/``, a live uvicorn server on it (API key ``my-key``,
PostgreSQL endpoint on a free port), and the docs' placeholders mapped to it."""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.server.conftest import live_server, png_bytes

if TYPE_CHECKING:
    from collections.abc import Iterator

KEY = "my-key"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "clients"
#: the tutorial's statements, as the docs write them
COPY = "COPY photos OPTIONS (if_exists='replace') FROM 'photos/'"
BUILD = ("BUILD MODEL px USING Pixels OPTIONS (image_size=16, overwrite=True) "
         "AS SELECT * FROM photos")
CONVERT = ("CONVERT USING px OPTIONS (image_col='image_path', result_col='convert_result') "
           "AS SELECT * FROM photos")
SEARCH = ("SEARCH IMAGE USING px OPTIONS (search_by='image', search_input='photos/p2.png', "
          "emb_col='convert_result', result_col='search_result', top_k=3) "
          "AS SELECT * FROM photos")


def make_photos(root: Path) -> None:
    (root / "photos").mkdir(parents=True, exist_ok=True)
    for i in range(6):
        (root / "photos" / f"p{i}.png").write_bytes(
            png_bytes((20 + 4 * i, 20), (40 * i, 200 - 30 * i, 90)))


@dataclass
class Served:
    base: str
    app: Any
    ws: Any

    @property
    def pg(self) -> Any:
        return self.app.state.pg

    def substitute(self, text: str) -> str:
        """A docs example with its placeholders (port 9001, PostgreSQL port 5433) made live."""
        port = self.base.rsplit(":", 1)[1]
        text = text.replace("127.0.0.1:9001", f"127.0.0.1:{port}")
        if self.pg is not None:
            text = re.sub(r"\b5433\b", str(self.pg.port), text)
        return text


@contextmanager
def served_workspace(tmp: Path, *, pg: bool = True, keys: tuple[str, ...] = (KEY,),
                     **settings: Any) -> Iterator[Served]:
    """A live server on a fresh workspace holding ``photos/``."""
    import pixql
    from pixql.server.app import create_app
    from pixql.server.settings import ServerSettings

    make_photos(tmp / "ws")
    ws = pixql.connect(str(tmp / "ws"), progress=False, confined=True)
    app = create_app(ServerSettings.from_env(api_keys=list(keys), pg_port=0 if pg else None,
                                             **settings), workspace=ws)
    try:
        with live_server(app) as base:
            yield Served(base, app, ws)
    finally:
        ws.close()


def doc_blocks(page: str, lang: str = "python") -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)
