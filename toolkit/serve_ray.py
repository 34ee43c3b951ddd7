"""`toolkit serve RUN --backend ray`: the JSON API (toolkit/serving.py) as a Ray Serve deployment of N replicas.

Each replica loads the run's predictor and answers the same routes as `toolkit serve` (POST /predict, /health,
/ready, /metrics, /docs), batching its own requests; Ray Serve's proxy spreads requests over the replicas and starts a
new replica when one dies. The guard of toolkit/guard.py (host names, origins, proxies) and the API's login run inside
every replica, so the rules are those of `toolkit serve`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Optional

from .errors import ToolkitError
from .hardware import usable_cpus
from .ray_token import send_token_if_any

log = logging.getLogger(__name__)

APP_NAME = "toolkit"


def api_builder(run_dir: str, options, guard: dict):
    """The ASGI app a replica serves, built on the replica (its model loads there, not in this process)."""

    def build():
        from fastapi import FastAPI
        from starlette.middleware import Middleware

        from .api import load
        from .guard import HostGuard
        from .serving import JsonApi

        predictor = load(run_dir)
        return FastAPI(
            routes=JsonApi(predictor, options).routes(),
            middleware=[Middleware(HostGuard, **guard)],
            docs_url=None,  # the API's own /docs and /openapi.json
            redoc_url=None,
            openapi_url=None,
        )

    return build


def replica_cpus(replicas: int) -> int:
    """The CPUs each replica asks Ray for (and its torch/ONNX Runtime threads): this machine's shared out, so that
    the replicas of a local runtime do not fight over the same cores."""
    return max(1, usable_cpus() // replicas)


def start_ray(address: Optional[str]) -> None:
    """Join the cluster at ``address`` (HOST:PORT, or "auto": the one this machine belongs to), else start a local
    Ray runtime for this process."""
    import ray

    # Ray Serve gives its HTTP proxy 5 s to answer a readiness check, three times, then kills it: on a small, busy
    # machine (2 cores training beside it) the proxy's start-up took longer, and serving never began.
    for name in ("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S"):
        os.environ.setdefault(name, "30")
    if address:
        send_token_if_any()
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError) as err:
            raise ToolkitError(
                f"no Ray cluster answers at --address {address} ({err}). Start one with `ray start --head`, or leave "
                "--address out to run Ray on this machine."
            ) from err
        return
    ray.init(
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
        runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith(("HF_", "TOOLKIT_"))}},
    )


def serve_on_ray(
    run_dir: str | Path,
    host: str,
    port: int,
    options,
    guard: dict,
    replicas: int = 1,
    address: Optional[str] = None,
    ready: Optional[threading.Event] = None,
) -> None:
    """Deploy the run's JSON API on Ray Serve with ``replicas`` replicas, at http://host:port, until SIGTERM/Ctrl+C;
    then remove the deployment (and a local runtime)."""
    try:
        import ray
        from ray import serve
    except ImportError as err:
        raise ToolkitError("--backend ray needs Ray Serve: pip install 'ray[serve]'.") from err

    run_dir = str(Path(run_dir).resolve())
    start_ray(address)
    try:
        cpus = replica_cpus(replicas)
        serve.start(http_options={"host": host, "port": port})
        deployment = serve.deployment(
            serve.ingress(api_builder(run_dir, options, guard))(),
            name="toolkit_model",
            num_replicas=replicas,
            ray_actor_options={"num_cpus": cpus, "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(cpus)}}},
            max_ongoing_requests=max(options.max_queue, 1),
            health_check_period_s=2,
        )
        serve.run(deployment.bind(), name=APP_NAME, route_prefix="/", blocking=False)
        log.info("serving %s on Ray Serve: %d replica(s) at http://%s:%d/predict", run_dir, replicas, host, port)
        print(f"serving {run_dir} on Ray Serve: {replicas} replica(s) at http://{host}:{port}/predict", flush=True)
        if ready is not None:
            ready.set()
        wait_for_stop()
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def wait_for_stop() -> None:
    """Block until SIGTERM or Ctrl+C."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1):
        pass
