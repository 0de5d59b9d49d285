"""Start or join Ray, bound to loopback when pixql starts it.

``address=None`` (the default) starts a Ray of this process's own on 127.0.0.1 (or reuses
the one already connected); ``'auto'`` joins the cluster ``ray start`` runs on this
machine; ``'host:port'`` or ``'ray://host:port'`` joins a remote one. A Ray that pixql
starts never listens beyond loopback: Ray's ``ray.init`` otherwise advertises (and binds
to) the machine's address, so the switch that makes Ray pick 127.0.0.1
(``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read when ``ray`` is imported) is set before
the import, and the addresses Ray then reports are checked.
"""

from __future__ import annotations

import importlib
import ipaddress
import math
import os
import threading
from typing import Any

from pixql.errors import ExecutionError, MissingDependencyError

#: read by Ray when it is imported: 0 makes a local Ray advertise and bind 127.0.0.1
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
INSTALL_HINT = "install it with: pip install 'pixql[ray]'"

_LOCK = threading.Lock()


def require_ray() -> Any:
    """The ``ray`` module, or MissingDependencyError naming the ``pixql[ray]`` extra."""
    os.environ.setdefault(LOOPBACK_SWITCH, "0")
    try:
        return importlib.import_module("ray")
    except ImportError as e:
        raise MissingDependencyError(f"engine='ray' needs Ray, which is not installed ({e}); "
                                     f"{INSTALL_HINT}") from None


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def connect(address: str | None, *, num_cpus: float, num_gpus: float = 0) -> Any:
    """Connect this process to Ray (see the module docstring) and return ``ray``. A local
    Ray is started with ``num_cpus`` logical CPUs (and ``num_gpus``), and every address
    it reports must be loopback (ExecutionError otherwise, and it is shut down). Note that
    ``ray`` is imported (and the pixql workers unpickle pixql's classes) on every node: the
    nodes of a cluster need pixql installed too, at the same version."""
    ray = require_ray()
    with _LOCK:
        if ray.is_initialized():
            return ray
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
        if address:
            ray.init(address=address, **kwargs)
            return ray
        prefer_loopback()
        # one CPU more than the workers reserve: Ray's own tasks and actors (Ray Data's
        # operators, Ray Train's controller) must not wait behind a pool that fills it
        # address='local': a Ray of this process's own, even where another process of the
        # machine runs one (address=None would join that one, at its settings and bindings)
        ray.init(address="local", num_cpus=math.ceil(num_cpus) + 1,
                 num_gpus=math.ceil(num_gpus), **kwargs)
        try:
            check_loopback(ray)
        except ExecutionError:
            ray.shutdown()
            raise
    return ray


def prefer_loopback() -> None:
    """Make a Ray started from here pick 127.0.0.1 even when ``ray`` was imported before
    :func:`require_ray` set the switch: Ray reads the switch's value from this module
    attribute when it picks the node's address (and its processes inherit the
    environment)."""
    os.environ[LOOPBACK_SWITCH] = "0"
    constants: Any = importlib.import_module("ray._private.ray_constants")
    constants.ENABLE_RAY_CLUSTER = False


def node_addresses(ray: Any) -> list[str]:
    """The addresses of the live nodes, as Ray reports them (plus the GCS's)."""
    hosts = [str(n["NodeManagerAddress"]) for n in ray.nodes() if n.get("Alive")]
    gcs = str(ray.get_runtime_context().gcs_address).rsplit(":", 1)[0]
    return [*hosts, gcs]


def check_loopback(ray: Any) -> None:
    """ExecutionError unless every address Ray reports is a loopback address."""
    wide = [h for h in node_addresses(ray) if not is_loopback(h)]
    if wide:
        raise ExecutionError(
            f"the local Ray that pixql started reports the address(es) {', '.join(wide)}, "
            f"not loopback: Ray was imported before pixql could set {LOOPBACK_SWITCH}=0. "
            "Set it in the environment, or start Ray yourself and pass ray_address")


def alive_nodes(ray: Any) -> list[dict[str, Any]]:
    """The live nodes that offer CPUs (Ray's own records)."""
    return [n for n in ray.nodes()
            if n.get("Alive") and float(n.get("Resources", {}).get("CPU", 0)) > 0]


def check_resources(ray: Any, workers: int, cpus: float, gpus: float) -> None:
    """ExecutionError when the cluster has fewer CPUs or GPUs than ``workers`` need (Ray
    would otherwise wait for them for ever)."""
    total = ray.cluster_resources()
    need = {"CPU": workers * cpus, "GPU": workers * gpus}
    short = [f"{need[k]:g} {k}s (the cluster has {float(total.get(k, 0)):g})"
             for k in need if need[k] > float(total.get(k, 0)) + 1e-9]
    if short:
        raise ExecutionError(
            f"num_workers={workers} need {' and '.join(short)}: lower num_workers, "
            "cpus_per_worker or gpus_per_worker, or add nodes to the cluster")
