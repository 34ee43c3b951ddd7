"""The JSON API that `toolkit serve RUN` answers beside its Gradio app, on the same port.

- ``POST /predict``: ``{"inputs": ..., "parameters": {...}}`` in the Hugging Face Inference API shape of the run's
  task (what ``huggingface_hub.InferenceClient`` sends), answered in that task's shape. A list of inputs is one
  batch. The task declares both shapes (``TaskSpec.serve``, a :class:`toolkit.tasks.ServeShape`).
- Concurrent requests are batched: a worker thread hands the model up to ``max_batch`` waiting inputs, waiting at
  most ``max_wait`` seconds for more. A full queue answers 503 with Retry-After instead of growing memory; a
  request over the size bound 413; one that waits past ``timeout`` 504.
- ``GET /health`` (the process answers), ``GET /ready`` (the model is loaded and its worker runs), ``GET /metrics``
  (Prometheus text: requests, latency, batch sizes, queue depth, errors), ``GET /docs`` and ``/openapi.json``.
- Bad input is a 4xx whose JSON ``error`` names the problem; nothing here answers 500 with a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hmac
import json
import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from starlette.requests import Request  # at the top: FastAPI reads the /predict endpoint's annotation from here

from .errors import ToolkitError
from .tasks import get_task

log = logging.getLogger(__name__)
TOKEN_ENV = "TOOLKIT_API_TOKEN"  # a bearer token the JSON API accepts (beside --auth's user and password)


# ----- batching -----


class QueueFull(Exception):
    """The batcher holds as many requests as it may: the client should retry later (503)."""


@dataclass
class Job:
    inputs: list
    options: dict
    key: str  # the options as text: only jobs with the same options share a batch
    future: Future = field(default_factory=Future)


class Batcher:
    """One worker thread that calls ``run(inputs, options)`` on batches gathered from concurrent requests: up to
    ``max_batch`` inputs, waiting at most ``max_wait`` seconds after the first for others to arrive. It waits only
    while requests come concurrently (the last batch held more than one): a lone client's request goes straight to
    the model. At most ``max_queue`` requests wait; more raise :class:`QueueFull`."""

    def __init__(
        self, run: Callable[[list, dict], list], max_batch: int, max_wait: float, max_queue: int, on_batch=None
    ):
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait
        self.jobs: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self.held: collections.deque[Job] = collections.deque()  # taken but with other options: first next time
        self.on_batch = on_batch or (lambda size: None)
        self.concurrent = False  # the last batch gathered more than one request
        self.worker = threading.Thread(target=self.loop, name="toolkit-batcher", daemon=True)
        self.worker.start()

    def submit(self, inputs: list, options: dict) -> Future:
        job = Job(inputs, options, json.dumps(options, sort_keys=True, default=str))
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise QueueFull from None
        return job.future

    def depth(self) -> int:
        return self.jobs.qsize() + len(self.held)

    def next_job(self, timeout: Optional[float]) -> Optional[Job]:
        if self.held:
            return self.held.popleft()
        try:
            return self.jobs.get(timeout=timeout) if timeout is None or timeout > 0 else self.jobs.get_nowait()
        except queue.Empty:
            return None

    def gather(self) -> list[Job]:
        """The next batch: the first waiting job, and others with the same options that arrive within max_wait."""
        first = self.next_job(None)
        wait = self.max_wait if self.concurrent else 0.0
        batch, count, deadline = [first], len(first.inputs), time.monotonic() + wait
        others: list[Job] = []
        while count < self.max_batch:
            job = self.next_job(deadline - time.monotonic())
            if job is None:
                break
            if job.key == first.key:
                batch.append(job)
                count += len(job.inputs)
            else:
                others.append(job)
        self.held.extendleft(reversed(others))
        self.concurrent = len(batch) + len(others) > 1
        return batch

    def loop(self) -> None:
        while True:
            batch = [job for job in self.gather() if job.future.set_running_or_notify_cancel()]
            if batch:
                self.answer(batch)

    def answer(self, batch: list[Job]) -> None:
        inputs = [item for job in batch for item in job.inputs]
        self.on_batch(len(inputs))
        try:
            answers = self.run(inputs, batch[0].options)
        except Exception:  # noqa: BLE001  (one request's input broke the batch: answer each on its own)
            if len(batch) > 1:
                for job in batch:
                    self.answer([job])
                return
            answers = None
        if answers is None:
            try:
                answers = self.run(batch[0].inputs, batch[0].options)
            except Exception as err:  # noqa: BLE001  (handed to the request, which answers 4xx or 500 without a trace)
                batch[0].future.set_exception(err)
                return
        start = 0
        for job in batch:
            job.future.set_result(answers[start : start + len(job.inputs)])
            start += len(job.inputs)


class Metrics:
    """The Prometheus series of one server, in a registry of its own."""

    def __init__(self, depth: Callable[[], int]):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "toolkit_requests", "Requests to the JSON API", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "toolkit_request_seconds",
            "Time from a /predict request's arrival to its answer",
            buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "toolkit_batch_size",
            "Inputs per model call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.errors = Counter("toolkit_errors", "Requests answered with an error", ["kind"], registry=self.registry)
        Gauge("toolkit_queue_depth", "Requests waiting for the model", registry=self.registry).set_function(depth)

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


@dataclass
class ServeOptions:
    """How the JSON API batches and bounds requests (defaults chosen with benchmarks/serve_load.py)."""

    # Up to 64 waiting inputs per model call, which the predictor sorts by length into its own batches: at 64
    # connections (sentiment, int8 export, 2 Zen 3 cores) 177 against 163 req/s with 32, means of 5 interleaved pairs.
    max_batch: int = 64
    max_wait: float = 0.004  # seconds the first request of a batch waits for others
    max_queue: int = 512  # requests waiting at most; more get 503
    timeout: float = 60.0  # seconds a request may wait for its answer; then 504
    auth: Optional[tuple[str, str]] = None  # --auth USER:PASSWORD: HTTP Basic for the API
    token: Optional[str] = field(default_factory=lambda: os.environ.get(TOKEN_ENV) or None)


def JsonResponse(content, status_code: int = 200, headers: Optional[dict] = None):  # noqa: N802 (a response class)
    """A JSON response serialized by orjson (numpy numbers too), as Gradio's own answers are."""
    import orjson
    from fastapi.responses import Response

    body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status_code, headers=headers, media_type="application/json")


class Refused(Exception):
    """A request answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class JsonApi:
    """The routes of one served run: its predictor, its task's shape, a batcher and metrics."""

    def __init__(self, predictor, options: Optional[ServeOptions] = None):
        self.predictor = predictor
        self.options = options or ServeOptions()
        from .predictor import bounds_of

        self.shape = get_task(predictor.cfg.task).serve
        if self.shape is None:
            raise ToolkitError(f"'{predictor.cfg.task}' runs have no JSON API yet.")
        self.bounds = bounds_of(predictor)
        folder = getattr(predictor, "folder", None)
        self.run_name = folder.parent.name if folder is not None else predictor.cfg.task
        self.metrics = Metrics(lambda: self.batcher.depth())
        self.batcher = Batcher(
            self.call_model,
            self.options.max_batch,
            self.options.max_wait,
            self.options.max_queue,
            on_batch=self.metrics.batch_size.observe,
        )
        # The largest body a request may send: its inputs at their bound, as JSON (twice: escapes), or the task's own.
        chars = self.bounds.max_chars or 100_000
        self.max_body = self.shape.max_body_bytes or 2 * chars * self.bounds.max_inputs + 65_536

    def call_model(self, inputs: list, options: dict) -> list:
        if self.shape.call is not None:
            return self.shape.call(self.predictor, inputs, options)
        return self.predictor(inputs, **options)

    # ----- requests -----

    def check_auth(self, headers: dict) -> None:
        """With --auth or TOOLKIT_API_TOKEN set, every API request but /health needs them (Basic or Bearer)."""
        auth, token = self.options.auth, self.options.token
        if auth is None and token is None:
            return
        given = headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "bearer" and token and hmac.compare_digest(value.strip(), token):
            return
        if scheme.lower() == "basic" and auth:
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user = password = ""
            if hmac.compare_digest(user, auth[0]) and hmac.compare_digest(password, auth[1]):
                return
        raise Refused(
            401,
            "this server needs a login: HTTP Basic with --auth's user and password, or Authorization: Bearer "
            f"${TOKEN_ENV}",
            {"WWW-Authenticate": 'Basic realm="toolkit"'},
        )

    async def read_body(self, request) -> bytes:
        """The body, read no further than the bound: a larger one (by its Content-Length, or as it streams in) is
        one byte over it, which :meth:`parse` refuses with 413, so memory never holds more."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return b"\0" * (self.max_body + 1)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body:
                return bytes(body[: self.max_body + 1])
        return bytes(body)

    def parse(self, body: bytes, content_type: str) -> tuple[list, bool, dict]:
        """(inputs, whether a single input was sent, the request's parameters) of a request body."""
        if len(body) > self.max_body:
            raise Refused(413, f"the request is over the {self.max_body:,} bytes this server takes.")
        if not content_type.startswith("application/json") and self.shape.read_bytes is not None:
            inputs, single, parameters = self.shape.read_bytes(body), True, {}
        else:
            try:
                payload = json.loads(body)
            except (ValueError, UnicodeDecodeError) as err:
                raise Refused(400, f"the body is not JSON ({err}): send {self.shape.example}.") from None
            if not isinstance(payload, dict) or "inputs" not in payload:
                raise Refused(422, f'send {{"inputs": ..., "parameters": {{...}}}}, e.g. {self.shape.example}.')
            parameters = payload.get("parameters") or {}
            if not isinstance(parameters, dict):
                raise Refused(422, f"parameters must be an object, not {type(parameters).__name__}.")
            inputs, single = self.shape.read(payload["inputs"])
        if not inputs:
            raise Refused(422, "inputs is empty: send one input or a list of them.")
        if len(inputs) > self.bounds.max_inputs:
            raise Refused(
                413, f"{len(inputs)} inputs in one request; this server takes at most {self.bounds.max_inputs}."
            )
        if self.shape.call is None:  # checked before it waits in the queue: a bad input does not break a batch
            for check in ("check", "check_bounds"):  # a task's own predictor class may have neither
                getattr(self.predictor, check, lambda inputs: None)(inputs)
        return inputs, single, parameters

    async def predict(self, body: bytes, headers: dict, gone: Optional[Callable] = None) -> tuple[int, Any, dict]:
        """(status, JSON answer, headers) of one /predict request. ``gone``: an awaitable's factory that returns
        when the client hangs up, so that a request nobody waits for any more leaves the queue unanswered."""
        started = time.perf_counter()
        try:
            self.check_auth(headers)
            inputs, single, parameters = self.parse(body, headers.get("content-type", "application/json"))
            options = self.shape.options(parameters)
            try:
                future = self.batcher.submit(inputs, options)
            except QueueFull:
                raise Refused(503, "the server is busy: retry in a second.", {"Retry-After": "1"}) from None
            answers = await self.wait(future, gone)
            answer = self.shape.write(answers, single, parameters)
            status, result, extra = 200, answer, {}
        except Refused as refused:
            status, result, extra = refused.status, {"error": refused.message}, refused.headers
        except ToolkitError as err:  # the predictor's own check of the input
            status, result, extra = 422, {"error": str(err)}, {}
        except Exception as err:  # noqa: BLE001  (the model failed: say so, keep serving)
            log.error("predict failed: %s: %s", type(err).__name__, err)
            status, result, extra = 500, {"error": f"the model failed on this input: {type(err).__name__}: {err}"}, {}
        self.metrics.requests.labels("/predict", str(status)).inc()
        if status >= 400:
            self.metrics.errors.labels(str(status)).inc()
        else:
            self.metrics.latency.observe(time.perf_counter() - started)
        return status, result, extra

    async def wait(self, future: Future, gone: Optional[Callable]) -> list:
        """The batcher's answers to one request. A request whose client hung up (``gone``), or that waited past the
        timeout, is cancelled: the worker skips it, so clients that gave up cost the model nothing."""
        answer = asyncio.wrap_future(future)
        hangup = asyncio.ensure_future(gone()) if gone is not None else None
        try:
            done, _ = await asyncio.wait(
                [answer] + ([hangup] if hangup else []), timeout=self.options.timeout, return_when="FIRST_COMPLETED"
            )
        finally:
            if hangup is not None:
                hangup.cancel()
        if answer in done:
            return answer.result()
        future.cancel()
        if hangup is not None and hangup in done:
            raise Refused(499, "the client closed the connection before the answer.")
        raise Refused(504, f"no answer within {self.options.timeout:g} s: the server is overloaded.")

    # ----- routes -----

    def routes(self) -> list:
        """Starlette routes for the Gradio app's FastAPI (they come before Gradio's own)."""
        from fastapi.openapi.docs import get_swagger_ui_html
        from fastapi.responses import HTMLResponse, Response
        from fastapi.routing import APIRoute

        def health():
            self.metrics.requests.labels("/health", "200").inc()
            return {"status": "ok"}

        def ready():
            alive = self.batcher.worker.is_alive()
            self.metrics.requests.labels("/ready", "200" if alive else "503").inc()
            body = {"ready": alive, "task": self.predictor.cfg.task, "run": self.run_name}
            return JsonResponse(body, status_code=200 if alive else 503)

        def metrics():
            return Response(self.metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

        def openapi():
            return JsonResponse(self.openapi(api_routes))

        def docs():
            return HTMLResponse(get_swagger_ui_html(openapi_url="/openapi.json", title="toolkit serve").body)

        async def predict_route(request: Request):
            headers = {k.lower(): v for k, v in request.headers.items()}
            body = await self.read_body(request)
            status, answer, extra = await self.predict(body, headers, gone=lambda: hung_up(request))
            return JsonResponse(answer, status_code=status, headers=extra)

        api_routes = [
            APIRoute(
                "/predict",
                predict_route,
                methods=["POST"],
                summary=f"Predict ({self.predictor.cfg.task})",
                description=self.shape.describe,
                openapi_extra={
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"example": json.loads(self.shape.example)}}
                        | ({"application/octet-stream": {}} if self.shape.read_bytes else {}),
                    }
                },
            ),
            APIRoute("/health", health, methods=["GET"], summary="The process answers"),
            APIRoute("/ready", ready, methods=["GET"], summary="The model is loaded and its worker runs"),
            APIRoute("/metrics", metrics, methods=["GET"], summary="Prometheus metrics"),
        ]
        return [
            *api_routes,
            APIRoute("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
            APIRoute("/docs", docs, methods=["GET"], include_in_schema=False),
        ]

    def openapi(self, routes: list) -> dict:
        from fastapi.openapi.utils import get_openapi

        return get_openapi(
            title=f"toolkit serve: {self.run_name}",
            version="1",
            description=f"The JSON API of a {self.predictor.cfg.task} run (Hugging Face Inference API shapes).",
            routes=routes,
        )


async def hung_up(request) -> None:
    """Returns when the client of ``request`` (its body read already) closes the connection."""
    while (await request.receive())["type"] != "http.disconnect":
        await asyncio.sleep(0.05)  # a server whose receive() does not block: look again later, not in a spin


def usage(run_dir, spec, port: int = 7860) -> str:
    """How to serve a run and call its JSON API (markdown): the command, curl, and the InferenceClient call."""
    shape = spec.serve
    if shape is None:
        return ""
    url = f"http://127.0.0.1:{port}/predict"
    if shape.read_bytes is not None:
        curl = f"curl -s {url} --data-binary @photo.jpg -H 'Content-Type: image/jpeg'"
    else:
        curl = f"curl -s {url} -H 'Content-Type: application/json' -d '{shape.example}'"
    lines = ["### Serve it", "", "```bash", f"toolkit serve {run_dir} --port {port}", curl, "```"]
    if shape.client_call:
        lines += [
            "",
            "```python",
            "from huggingface_hub import InferenceClient",
            "",
            f'client = InferenceClient(model="{url}")',
            f"client.{shape.client_call}",
            "```",
        ]
    return "\n".join(lines) + "\n"
