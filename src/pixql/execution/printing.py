"""PRINT IMAGE [OPTIONS (image_col=...)] AS <query>: the rows plus their image paths.

The engine only resolves the paths; showing them is the caller's job (the notebook magic
draws a grid, the CLI writes a contact sheet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pixql.errors import ModelError, NotFoundError
from pixql.execution.engine import executes
from pixql.execution.options import PrintOptions, validate
from pixql.execution.result import Result
from pixql.sql.nodes import PrintImage

if TYPE_CHECKING:
    from pixql.execution.context import ExecContext


@executes(PrintImage)
def run_print(ctx: ExecContext, node: PrintImage) -> Result:
    if node.target != "image":
        raise ModelError(f"PRINT {node.target.upper()} is not supported; use PRINT IMAGE")
    opts = validate(PrintOptions, node, what="PRINT IMAGE")
    rows = ctx.query_arrow(node.query)
    if opts.image_col not in rows.column_names:
        raise NotFoundError(f"image_col {opts.image_col!r} is not a column of the query; "
                            f"columns: {', '.join(rows.column_names)}")
    paths = [ctx.ws.resolve(str(v)) for v in rows.column(opts.image_col).to_pylist()
             if v is not None]
    return Result(table=rows, images=paths, image_col=opts.image_col,
                  message=f"{len(paths)} image(s)")
