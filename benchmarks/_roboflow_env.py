"""Roboflow's inference server in its own virtual environment, for ``peers_roboflow.py``.

Never installed into pixql's environment and never a pixql dependency: the benchmark makes
``<venv>`` (default ``~/.cache/pixql/bench/roboflow-venv``) with ``python -m venv`` and
installs the exact package set of :data:`LOCK` into it (``inference-cpu==1.8.3`` and its
dependencies; about 7 GB with CUDA torch, a few minutes); a later run reuses it while it
holds that same set. The server itself:

* ``_roboflow_register.py`` (run by the venv's python) puts the benchmark's two ONNX files
  into ``inference_models``' offline cache as ``clip/ViT-B-16``;
* ``_roboflow_app.py`` builds the app as Roboflow's CPU Docker image does and serves it
  with uvicorn on 127.0.0.1, with ``OFFLINE_MODE=True``: no call to the Roboflow API (no
  model metadata, no usage telemetry, no version check), no API key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: the venv's exact packages (``pip install --no-deps -r``: one pip resolution of the server
#: and the HTTP packages its Docker images add is "resolution-too-deep", and their pins
#: conflict on protobuf, as in Roboflow's images); the direct requirements were
#: :data:`REQUIREMENTS`
LOCK = HERE / "_roboflow_lock.txt"
#: what the lock was made from: the server package, then the packages its Docker images add
#: (roboflow/inference requirements/requirements.http.txt: ``http_api`` imports them, the
#: wheel does not depend on them)
REQUIREMENTS = (
    "inference-cpu==1.8.3",
    "uvicorn[standard]<=0.34.0",
    "python-multipart==0.0.22",
    "asgi-correlation-id~=4.3.1",
    "fastapi-cprofile<=0.0.2",
    "opentelemetry-api~=1.27.0",
    "opentelemetry-sdk~=1.27.0",
    "opentelemetry-exporter-otlp-proto-grpc~=1.27.0",
    "opentelemetry-exporter-otlp-proto-http~=1.27.0",
    "opentelemetry-instrumentation-fastapi~=0.48b0",
    "opentelemetry-instrumentation-requests~=0.48b0",
)
#: file in the venv recording what was installed
MARKER = "pixql-bench-requirements.txt"
#: what must import for the venv to count as usable
PROBE = "import inference, inference_models, onnxruntime, uvicorn, clip"


class RoboflowUnavailable(RuntimeError):
    """The Roboflow venv cannot be created or used (the benchmark skips Roboflow)."""


def python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def pinned(lock: Path = LOCK) -> list[str]:
    """The ``name==version`` lines of ``lock``."""
    lines = lock.read_text(encoding="utf-8").splitlines()
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def is_ready(venv: Path, lock: Path = LOCK) -> bool:
    """The venv holds ``lock`` (recorded) and the server's modules import."""
    marker = venv / MARKER
    if not (python_of(venv).is_file() and marker.is_file()
            and marker.read_text(encoding="utf-8") == lock.read_text(encoding="utf-8")):
        return False
    done = subprocess.run([str(python_of(venv)), "-c", PROBE], capture_output=True,
                          timeout=300, check=False)
    return done.returncode == 0


def ensure_venv(venv: Path, *, install: bool = True, lock: Path = LOCK) -> Path:
    """The venv's python, creating and filling the venv when needed.

    Raises:
        RoboflowUnavailable: ``install`` is False and the venv is not ready, or ``venv`` /
            ``pip install`` failed (the message ends with pip's last lines).
    """
    if is_ready(venv, lock):
        return python_of(venv)
    if not install:
        raise RoboflowUnavailable(f"no ready Roboflow venv at {venv} (and --no-install)")
    if not python_of(venv).is_file():
        print(f"creating the Roboflow venv {venv}", flush=True)
        run_or_raise([sys.executable, "-m", "venv", str(venv)], "python -m venv")
    print(f"installing {REQUIREMENTS[0]} ({len(pinned(lock))} pinned packages of {lock.name}) "
          f"into {venv} (a few minutes, ~7 GB)", flush=True)
    run_or_raise([str(python_of(venv)), "-m", "pip", "install", "--disable-pip-version-check",
                  "-q", "--no-deps", "-r", str(lock)], "pip install")
    (venv / MARKER).write_text(lock.read_text(encoding="utf-8"), encoding="utf-8")
    if not is_ready(venv, lock):
        raise RoboflowUnavailable(f"{venv}: installed, but `{PROBE}` fails")
    return python_of(venv)


def run_or_raise(cmd: list[str], what: str, timeout: float = 3600, **kw: object) -> str:
    """Run ``cmd``; its stdout, or RoboflowUnavailable with the tail of its output."""
    try:
        done = subprocess.run(cmd, capture_output=True, encoding="utf-8", timeout=timeout,
                              check=False, **kw)  # type: ignore[call-overload]
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RoboflowUnavailable(f"{what} failed: {e}") from e
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        raise RoboflowUnavailable(f"{what} failed (exit {done.returncode}):\n{tail}")
    return str(done.stdout)


def server_env(home: Path) -> dict[str, str]:
    """Environment of the Roboflow server and of the registration script."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIXQL_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({
        "OFFLINE_MODE": "True",  # no Roboflow API, telemetry or version check
        "INFERENCE_HOME": str(home),
        "MODEL_CACHE_DIR": str(home),
        "CLIP_VERSION_ID": "ViT-B-16",
        "ONNXRUNTIME_EXECUTION_PROVIDERS": "[CPUExecutionProvider]",
        "NUM_WORKERS": "1",
    })
    return env


def register(python: Path, onnx_dir: Path, home: Path) -> str:
    """Put ``onnx_dir``'s files into the offline cache under ``home``; the script's JSON."""
    return run_or_raise([str(python), str(HERE / "_roboflow_register.py"), str(onnx_dir)],
                        "registering the ONNX files", timeout=600, env=server_env(home))


def server_command(python: Path, port: int) -> list[str]:
    return [str(python), str(HERE / "_roboflow_app.py"), str(port)]


def server_cwd(root: Path) -> Path:
    """The server's working folder: ``HttpInterface`` mounts ``./inference/landing/out/
    static`` and ``./inference/landing/out/_next/static`` (the landing page, copied into
    the Docker image, not shipped in the wheel), so they must exist (empty here)."""
    for sub in ("static", "_next/static"):
        (root / "inference" / "landing" / "out" / sub).mkdir(parents=True, exist_ok=True)
    return root
