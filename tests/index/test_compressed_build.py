"""Building and storing 8-bit codes: saved codes load back, wrong or damaged files do not."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from pixql.index import compressed_build
from tests.index.test_compressed import _data

if TYPE_CHECKING:
    from pathlib import Path

pytest.importorskip("faiss")


def test_saved_codes_load_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    units = _data("random", 500, 8, rng)
    codes = compressed_build.build(lambda s, e: units[s:e], 500, 8, np.ones(500, bool))
    compressed_build.save(codes, tmp_path)
    again = compressed_build.load(tmp_path, 500, 8)
    assert again is not None
    assert np.array_equal(again.err, codes.err)
    assert compressed_build.load(tmp_path, 501, 8) is None
    (tmp_path / "sq8.0.faiss").write_bytes(b"junk")
    assert compressed_build.load(tmp_path, 500, 8) is None
