"""`toolkit serve`'s JSON API on a real server: the stock huggingface_hub.InferenceClient, raw HTTP for what it
does not send, batching of concurrent requests, the bounds, the health and metrics routes, the login, the guard."""

from __future__ import annotations

import http.client
import json
import threading
import time

import pytest
from conftest import inference_client, served

from toolkit.serving import Batcher, QueueFull


@pytest.fixture(scope="module")
def sentiment_run(tiny_bert, text_data, tmp_path_factory):
    import toolkit

    return toolkit.train(
        {
            "task": "sentiment",
            "model": str(tiny_bert),
            "output_dir": str(tmp_path_factory.mktemp("serve_api") / "run"),
            "trackers": [],
            "data": {"train": str(text_data["train"]), "validation": str(text_data["validation"])},
            "epochs": 4,
            "batch_size": 16,
            "lr": 3e-3,
            "seed": 0,
        }
    )


def post(port: int, body, path: str = "/predict", headers: dict | None = None) -> tuple[int, dict, object]:
    """(status, headers, JSON answer) of one POST; ``body``: bytes, or anything JSON."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    raw, headers = response.read(), {k.lower(): v for k, v in response.getheaders()}
    return response.status, headers, json.loads(raw) if "json" in headers.get("content-type", "") else raw.decode()


def get(port: int, path: str, headers: dict | None = None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read().decode()


def metric(text: str, name: str, labels: dict | None = None) -> float:
    """A sample's value from Prometheus text, read with prometheus_client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return sample.value
    return 0.0


@pytest.mark.slow
def test_json_api_answers_the_inference_client_batches_and_refuses_bad_input(sentiment_run, monkeypatch):
    import toolkit

    predictor = toolkit.load(sentiment_run.dir)
    texts = ["the acting was wonderful", "a dreadful, boring plot"]
    expected = predictor(texts)
    with served(sentiment_run.dir) as server:
        port = server.port
        assert get(port, "/health") == (200, '{"status":"ok"}')
        status, ready = get(port, "/ready")
        assert status == 200 and json.loads(ready)["ready"] is True

        client = inference_client(f"http://127.0.0.1:{port}/predict", monkeypatch)
        found = client.text_classification(texts[0])
        assert [e.label for e in found] == sorted(expected[0]["scores"], key=lambda k: -expected[0]["scores"][k])
        assert found[0].score == pytest.approx(max(expected[0]["scores"].values()), abs=1e-5)
        assert len(client.text_classification(texts[1], top_k=1)) == 1

        # A list is one batch: an answer per text, in order.
        status, _, answer = post(port, {"inputs": texts})
        assert status == 200 and [rows[0]["label"] for rows in answer] == [e["label"] for e in expected]

        # Bad input: a 4xx whose error names the problem; the server stays up.
        cases = [
            (b"not json", 400, "the body is not JSON"),
            ({"text": "x"}, 422, 'send {"inputs"'),
            ({"inputs": 5}, 422, "inputs must be a string or a list of strings"),
            ({"inputs": []}, 422, "inputs is empty"),
            ({"inputs": "  "}, 422, "input 1 is empty"),
            ({"inputs": "x", "parameters": {"temperature": 1}}, 422, "unknown parameter(s) temperature"),
            ({"inputs": "x", "parameters": {"top_k": 0}}, 422, "top_k must be a whole number"),
            ({"inputs": ["x"] * 257}, 413, "257 inputs in one request; this server takes at most 256"),
            ({"inputs": "a" * 100_001}, 422, "over the 100,000"),
        ]
        for body, code, message in cases:
            status, _, answer = post(port, body)
            assert status == code and message in answer["error"], (body if len(str(body)) < 80 else "long", answer)
        assert post(port, b"x" * 60_000_000)[0] == 413

        # Another origin's page may not call it (the same guard as the app); no Origin (a client) may.
        assert post(port, {"inputs": "x"}, headers={"Origin": "http://localhost:3000"})[0] == 403

        # Concurrent requests share forward passes: 64 clients at once, every answer right.
        answers: dict = {}

        def one(i: int) -> None:
            answers[i] = post(port, {"inputs": texts[i % 2]})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(answers[i][0] == 200 for i in range(64))
        assert {answers[i][2][0][0]["label"] for i in range(0, 64, 2)} == {expected[0]["label"]}
        assert {answers[i][2][0][0]["label"] for i in range(1, 64, 2)} == {expected[1]["label"]}

        status, text = get(port, "/metrics")
        assert status == 200
        assert metric(text, "toolkit_requests_total", {"route": "/predict", "status": "200"}) == 67
        assert metric(text, "toolkit_requests_total", {"route": "/predict", "status": "422"}) == 7
        calls = metric(text, "toolkit_batch_size_count")
        inputs = metric(text, "toolkit_batch_size_sum")
        assert inputs == 68 and calls < 66, (calls, inputs)  # batched: fewer model calls than requests
        assert metric(text, "toolkit_queue_depth") == 0
        assert metric(text, "toolkit_request_seconds_count") == 67

        status, schema = get(port, "/openapi.json")
        assert status == 200 and {"/predict", "/health", "/ready", "/metrics"} <= set(json.loads(schema)["paths"])
        assert get(port, "/docs")[0] == 200
        assert get(port, "/")[0] == 200  # the Gradio app, on the same port
    assert "Traceback" not in server.proc.stderr.read()


def test_the_batcher_gathers_requests_with_the_same_options_and_refuses_when_full():
    gate, calls = threading.Event(), []

    def run(inputs: list, options: dict) -> list:
        gate.wait(10)
        calls.append((list(inputs), options))
        return [f"{x}{options.get('suffix', '')}" for x in inputs]

    batcher = Batcher(run, max_batch=8, max_wait=0.05, max_queue=4)
    first = batcher.submit(["a"], {})  # taken by the worker, which waits at the gate
    time.sleep(0.2)
    queued = [batcher.submit(["b", "c"], {}), batcher.submit(["d"], {"suffix": "!"}), batcher.submit(["e"], {})]
    queued.append(batcher.submit(["f"], {}))
    with pytest.raises(QueueFull):
        batcher.submit(["g"], {})
    gate.set()
    assert first.result(10) == ["a"]
    assert [f.result(10) for f in queued] == [["b", "c"], ["d!"], ["e"], ["f"]]
    assert calls[1] == (["b", "c", "e", "f"], {}) and calls[2] == (["d"], {"suffix": "!"})


def test_a_lone_request_goes_straight_to_the_model_and_concurrent_ones_wait_to_batch():
    gate, calls = threading.Event(), []

    def run(inputs: list, options: dict) -> list:
        gate.wait(10)
        calls.append(list(inputs))
        return inputs

    batcher = Batcher(run, max_batch=8, max_wait=0.5, max_queue=8)
    gate.set()
    started = time.monotonic()
    assert batcher.submit(["a"], {}).result(10) == ["a"]
    assert time.monotonic() - started < 0.25  # not held back for max_wait: nobody else was asking
    gate.clear()
    held = batcher.submit(["b"], {})  # the worker takes it and waits at the gate; two more queue meanwhile
    time.sleep(0.1)
    together = [batcher.submit(["c"], {}), batcher.submit(["d"], {})]
    gate.set()
    assert held.result(10) == ["b"] and [f.result(10) for f in together] == [["c"], ["d"]]
    # Requests now come concurrently: the next one waits up to max_wait, and one sent 0.1 s later joins it.
    first = batcher.submit(["e"], {})
    time.sleep(0.1)
    second = batcher.submit(["f"], {})
    assert first.result(10) == ["e"] and second.result(10) == ["f"]
    assert calls == [["a"], ["b"], ["c", "d"], ["e", "f"]]


def test_a_request_whose_client_hangs_up_or_times_out_leaves_the_queue_unanswered(sentiment_run):
    import asyncio

    import toolkit
    from toolkit.serving import JsonApi, ServeOptions

    gate, seen = threading.Event(), []

    def run(inputs: list, options: dict) -> list:
        gate.wait(10)
        seen.extend(inputs)
        return [[{"label": "positive", "score": 1.0}]] * len(inputs)

    api = JsonApi(toolkit.load(sentiment_run.dir), ServeOptions(timeout=0.5))
    api.batcher = Batcher(run, max_batch=8, max_wait=0.0, max_queue=8)
    headers = {"content-type": "application/json"}

    async def scenario():
        busy = api.batcher.submit(["first"], {})  # the worker holds it at the gate
        await asyncio.sleep(0.1)
        hung_up = asyncio.Event()
        left = asyncio.ensure_future(api.predict(b'{"inputs": "gone"}', headers, gone=hung_up.wait))
        late = asyncio.ensure_future(api.predict(b'{"inputs": "late"}', headers))
        await asyncio.sleep(0.1)
        hung_up.set()  # its client closes the connection while it queues
        answers = await left, await late
        gate.set()
        return busy.result(10), *answers

    busy, left, late = asyncio.run(scenario())
    assert busy[0][0]["label"] == "positive"
    assert left[0] == 499 and "closed the connection" in left[1]["error"]
    assert late[0] == 504 and "no answer within 0.5 s" in late[1]["error"]
    time.sleep(0.3)
    assert seen == ["first"]  # the worker skipped both: nobody waits for their answers


def test_the_studio_shows_how_to_serve_a_finished_run(sentiment_run):
    from toolkit.studio import Studio

    card = Studio(sentiment_run.dir.parent).catalog.model_card(sentiment_run.dir.name)
    assert f"toolkit serve {sentiment_run.dir} --port 7860" in card
    assert "curl -s http://127.0.0.1:7860/predict" in card and "client.text_classification(" in card
    assert card.index("### Serve it") < card.index("---")  # before the model card itself


def replica_pids() -> list[int]:
    """The processes of Ray Serve's replicas of `toolkit serve --backend ray` (Ray names them in their titles)."""
    from pathlib import Path

    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"ServeReplica:toolkit:toolkit_model" in command:
                found.append(int(proc.name))
    return found


def post_with_retries(port: int, body, patience: float = 60.0) -> tuple[int, object, int]:
    """(status, answer, retries): a client that retries what a lost replica answers (no answer, 5xx) for up to
    ``patience`` seconds (Ray may take several to route around a dead replica on a busy machine)."""
    deadline, attempt = time.monotonic() + patience, 0
    while True:
        try:
            status, _, answer = post(port, body)
        except (OSError, http.client.HTTPException):
            status, answer = None, None
        if (status is not None and status < 500) or time.monotonic() > deadline:
            return status, answer, attempt
        attempt += 1
        time.sleep(0.25)


@pytest.mark.slow
def test_ray_serve_replicas_answer_as_toolkit_serve_and_lose_no_retried_request(sentiment_run):
    import os
    import signal

    texts = ["the acting was wonderful", "a dreadful, boring plot", "lovely"]
    with served(sentiment_run.dir) as plain:
        status, _, expected = post(plain.port, {"inputs": texts, "parameters": {"top_k": 2}})
        assert status == 200
    with served(sentiment_run.dir, "--backend", "ray", "--replicas", "2", ready_path="/ready", wait=300) as ray:
        status, _, answer = post(ray.port, {"inputs": texts, "parameters": {"top_k": 2}})
        assert status == 200
        for got, want in zip(answer, expected):
            assert [g["label"] for g in got] == [w["label"] for w in want]
            assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-6)
        assert get(ray.port, "/health")[0] == 200 and "toolkit_requests" in get(ray.port, "/metrics")[1]
        assert get(ray.port, "/docs")[0] == 200 and "/predict" in get(ray.port, "/openapi.json")[1]
        status, _, error = post(ray.port, {"inputs": ""})
        assert status == 422 and "empty" in error["error"]
        status, _, _ = post(ray.port, {"inputs": "x"}, headers={"Origin": "http://evil.example"})
        assert status == 403  # the guard runs in every replica
        replicas = replica_pids()
        assert len(replicas) == 2

        # Clients keep asking while one replica is killed: each request is answered, retried where it was lost.
        results, stop = [], threading.Event()

        def client() -> None:
            while not stop.is_set():
                results.append(post_with_retries(ray.port, {"inputs": texts[0]}))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        os.kill(replicas[0], signal.SIGKILL)
        time.sleep(8)
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        assert len(results) > 20 and all(status == 200 for status, _, _ in results), results[-5:]
        assert all(answer[0][0]["label"] == expected[0][0]["label"] for _, answer, _ in results)  # one text: [[...]]
        deadline = time.time() + 120
        while time.time() < deadline and len(set(replica_pids()) - {replicas[0]}) < 2:
            time.sleep(1)
        assert len(set(replica_pids()) - {replicas[0]}) == 2  # Ray Serve started a new replica
