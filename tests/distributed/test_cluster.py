"""Starting and joining Ray (issue 13): loopback only, clear errors, and CONVERT on a
two-node cluster on 127.0.0.1 (Ray's cluster utilities), the model shipped through Ray's
object store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pixql.distributed.cluster import check_resources, is_loopback, node_addresses
from pixql.errors import ExecutionError
from tests.conftest import make_image_folder

if TYPE_CHECKING:
    from collections.abc import Iterator


def test_loopback_addresses() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "::1", "[::1]", "localhost", "127.3.2.1"]))
    assert not any(map(is_loopback, ["192.0.2.2", "0.0.0.0", "example.com"]))


@pytest.fixture(scope="module")
def two_nodes(ray_session: object) -> Iterator[Any]:
    """A head and a worker node, 1 CPU each, on loopback; this process not connected (the
    CONVERT joins by address)."""
    from pixql.distributed.cluster import prefer_loopback, require_ray

    ray = require_ray()
    ray.shutdown()  # the session's in-process Ray, if a module before started it
    prefer_loopback()
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_convert_on_two_nodes_ships_the_model(ws: Any, two_nodes: Any) -> None:
    make_image_folder(ws.root / "imgs", per_class=4, shapes=("a", "b"))
    ws.sql("COPY t OPTIONS (if_exists='replace') FROM 'imgs/'")
    ws.sql("INSERT INTO t (image_path, label) VALUES ('imgs/gone.png', 'x')")
    ws.sql("BUILD MODEL q USING Pixels OPTIONS (image_size=8) AS SELECT * FROM t")
    ws.sql("CONVERT USING q OPTIONS (result_col='e_local', on_error='null') "
           "AS SELECT * FROM t")
    res = ws.sql(f"CONVERT USING q OPTIONS (result_col='e_ray', on_error='null', "
                 f"engine='ray', ray_address='{two_nodes.address}', num_workers=2, "
                 f"batch_size=2, model_transfer='ship') AS SELECT * FROM t")
    assert "computed by engine 'ray'" in res.message
    import ray

    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 2
    addresses = node_addresses(ray)
    assert all(is_loopback(a) for a in addresses), addresses
    same = ws.sql("SELECT count(*) FROM t WHERE e_ray IS NOT DISTINCT FROM e_local AND "
                  "e_ray__pixql = e_local__pixql").fetchone()[0]
    assert same == 9
    with pytest.raises(ExecutionError, match=r"num_workers=3 need 3 CPUs \(the cluster has 2\)"):
        check_resources(ray, 3, 1.0, 0.0)
