"""LIST MODEL and DELETE MODEL."""

from __future__ import annotations

from pixql.errors import OptionError
from pixql.execution.context import ExecContext, to_arrow
from pixql.execution.engine import executes
from pixql.execution.result import Result
from pixql.sql.nodes import DeleteModel, ListModels


@executes(ListModels)
def run_list(ctx: ExecContext, node: ListModels) -> Result:
    if node.options:
        raise OptionError("LIST MODEL takes no OPTIONS")
    return Result(table=to_arrow(ctx.cur.sql(ctx.catalog.list_models_sql())))


@executes(DeleteModel)
def run_delete(ctx: ExecContext, node: DeleteModel) -> Result:
    """Remove the catalog row (committed first), then the artifact folder."""
    with ctx.ws.write_lock:
        rec = ctx.catalog.find_model(node.name) if node.if_exists else ctx.catalog.get_model(
            node.name)
        if rec is None:
            return Result(message=f"model {node.name} does not exist; nothing to delete")
        with ctx.transaction():
            ctx.catalog.delete_model(rec.name)
        ctx.ws.artifacts.remove(ctx.ws.root / rec.artifact_path)
        ctx.ws.forget_embedder(rec.name)
    return Result(message=f"deleted model {rec.name}")
