"""``TestPixels``: the Pixels model with faults and delays on demand, for tests and
benchmarks of CONVERT's compute engines (never for real work).

Importing this module registers the kind (and a Ray worker imports it by name when it
loads such a model)::

    BUILD MODEL m USING TestPixels OPTIONS (image_size=8, crash_once_file='/tmp/x')
    AS SELECT * FROM t

``crash_once_file``: the first forward pass whose process finds no such file creates it
and kills its process (``os._exit``), as a worker lost mid-run; ``crash_always``: every
forward pass kills its process; ``sleep_ms``: each forward pass waits so long first (a
model bound by an accelerator, whose host process mostly waits); ``load_log``: a folder
where each load of the model leaves a file (how many times the model was loaded).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from pixql.models.pixels import Pixels, PixelsEmbedder, PixelsOptions
from pixql.models.registry import register

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import numpy as np

    from pixql.models.base import BuildContext, BuildOptions, BuildResult, Embedder


class TestPixelsOptions(PixelsOptions):
    """Pixels' options plus the faults of the module docstring."""

    crash_once_file: str | None = Field(default=None, description="crash once (see module)")
    crash_always: bool = Field(default=False, description="crash on every forward pass")
    sleep_ms: float = Field(default=0.0, ge=0, le=60_000, description="wait per forward pass")
    load_log: str | None = Field(default=None, description="a file per load in this folder")


class TestPixelsEmbedder(PixelsEmbedder):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(int(config["image_size"]), bool(config.get("grayscale", True)),
                         bool(config.get("center", True)))
        self.crash_once_file = config.get("crash_once_file")
        self.crash_always = bool(config.get("crash_always"))
        self.sleep_s = float(config.get("sleep_ms") or 0) / 1000

    def forward(self, batch: Sequence[np.ndarray], modality: str) -> np.ndarray:
        if self.crash_always:
            os._exit(3)
        if self.crash_once_file and not os.path.exists(self.crash_once_file):
            with open(self.crash_once_file, "w", encoding="utf-8") as fh:
                fh.write(str(os.getpid()))
            os._exit(3)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return super().forward(batch, modality)


@register
class TestPixels(Pixels):
    """Model kind ``TestPixels`` (see the module docstring)."""

    name: ClassVar[str] = "testpixels"
    display_name: ClassVar[str] = "TestPixels"
    build_options = TestPixelsOptions
    __test__ = False  # not a pytest test class

    @classmethod
    def build(cls, ctx: BuildContext, options: BuildOptions) -> BuildResult:
        assert isinstance(options, TestPixelsOptions)
        result = super().build(ctx, options)
        result.config.update(crash_once_file=options.crash_once_file,
                             crash_always=options.crash_always, sleep_ms=options.sleep_ms,
                             load_log=options.load_log)
        return result

    @classmethod
    def load(cls, artifact_dir: Path | None, config: dict[str, Any]) -> Embedder:
        if config.get("load_log"):
            import tempfile

            os.makedirs(config["load_log"], exist_ok=True)
            os.close(tempfile.mkstemp(prefix=f"{os.getpid()}-", dir=config["load_log"])[0])
        return TestPixelsEmbedder(config)
