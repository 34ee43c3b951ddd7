"""Servers answer only for their own host, and only their own pages (or no page: gradio_client, curl) change state.
Checked with raw HTTP, as a DNS-rebinding page or another site's page would send it."""

from __future__ import annotations

import http.client
import json

import pytest
from conftest import free_port

from toolkit.apps.guard import HostGuard, host_name, own_names


def request(
    port: int,
    method: str,
    path: str,
    host: str,
    origin: str | None = None,
    body: bytes = b"",
    content_type: str = "application/json",
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Host": host, "Content-Type": content_type}
    if origin is not None:
        headers["Origin"] = origin
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read()


def multipart(name: str, content: bytes) -> tuple[bytes, str]:
    boundary = "toolkitboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            f"Content-Type: text/plain\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_names_a_server_answers_for():
    assert own_names("127.0.0.1") >= {"127.0.0.1", "localhost", "::1"}
    assert "evil.example" not in own_names("127.0.0.1")
    assert own_names("127.0.0.1", ["studio.example.org"]) >= {"studio.example.org", "localhost"}
    assert host_name("[::1]:7860") == "::1" and host_name("http://Evil.Example:7931") == "evil.example"
    guard = HostGuard(None, {"localhost", ".gradio.live"})
    assert guard.allows("abc123.gradio.live") and not guard.allows("gradio.live.evil.example")


@pytest.mark.slow
def test_studio_refuses_foreign_hosts_and_cross_origin_writes(tmp_path):
    import zipfile

    from gradio_client import Client, handle_file
    from test_studio import start_studio, stop_studio

    runs, port = tmp_path / "runs", free_port()
    server = start_studio(runs, port)
    own, evil = f"127.0.0.1:{port}", f"evil.example:{port}"
    try:
        # DNS rebinding: the page's own name resolves to 127.0.0.1, so the browser sends Host: evil.example.
        for method, path in (("GET", "/"), ("GET", "/gradio_api/info"), ("GET", "/config")):
            status, body = request(port, method, path, evil, origin=f"http://{evil}")
            assert status == 421 and b"does not answer for host 'evil.example'" in body, (path, status)
        status, _ = request(port, "POST", "/gradio_api/call/runs", evil, origin=f"http://{evil}", body=b'{"data": []}')
        assert status == 421
        for alias in (own, f"localhost:{port}"):
            assert request(port, "GET", "/gradio_api/info", alias)[0] == 200

        # Another site's page, sent to the right host: reads are harmless (CORS hides them), writes are refused.
        uploads_before = sorted(p.name for p in (runs / ".studio").rglob("*") if p.is_file())
        body, kind = multipart("evil.yaml", b"trust_remote_code: true\n")
        status, answer = request(
            port, "POST", "/gradio_api/upload", own, origin="http://evil.example", body=body, content_type=kind
        )
        assert status == 403 and b"may not change" in answer
        assert sorted(p.name for p in (runs / ".studio").rglob("*") if p.is_file()) == uploads_before
        status, _ = request(
            port, "POST", "/gradio_api/call/runs", own, origin="http://evil.example", body=b'{"data": []}'
        )
        assert status == 403
        assert not list(runs.glob(".studio/jobs/*"))

        # The studio's own page, and clients that send no Origin (gradio_client, curl), still work.
        status, answer = request(
            port, "POST", "/gradio_api/call/runs", own, origin=f"http://{own}", body=b'{"data": []}'
        )
        assert status == 200 and "event_id" in json.loads(answer)
        status, _ = request(port, "POST", "/gradio_api/upload", own, body=body, content_type=kind)
        assert status == 200
        client = Client(f"http://{own}/", verbose=False)
        assert client.predict(api_name="/runs") == []

        # No remote code from the studio: trust_remote_code, in a config or an override, or a model from the uploads.
        uploaded = runs / ".studio" / "uploads" / "model"
        uploaded.mkdir(parents=True)
        remote = tmp_path / "remote.yaml"
        remote.write_text("task: sentiment\ntrust_remote_code: true\n")
        for config, overrides, refusal in (
            ("sentiment_minilm.yaml", ["trust_remote_code=true"], "trust_remote_code: true is refused"),
            (str(remote), [], "trust_remote_code: true is refused"),
            ("sentiment_minilm.yaml", [f"model={uploaded}"], "model points into the studio's uploads"),
        ):
            with pytest.raises(Exception, match=refusal):
                client.predict(config, overrides, "remote", api_name="/start")
        assert client.predict(api_name="/runs") == [] and not (runs / "remote").exists()

        # Refusals: a clear message to the client, one log line in the terminal, nothing left behind.
        with pytest.raises(Exception, match="no run named 'ghost'"):
            client.predict("delete", "ghost", "ghost", api_name="/action")
        with pytest.raises(Exception, match="no finished run named 'ghost'"):
            client.predict("ghost", "a fine film", api_name="/predict")
        evil = tmp_path / "evil.zip"
        with zipfile.ZipFile(evil, "w") as archive:
            archive.writestr("../../outside.txt", b"x")
        folders_before = sorted(p.name for p in (runs / ".studio/uploads").iterdir())
        with pytest.raises(Exception, match="outside"):
            client.predict(handle_file(str(evil)), api_name="/upload")
        assert sorted(p.name for p in (runs / ".studio/uploads").iterdir()) == folders_before
    finally:
        stop_studio(server)
    terminal = server.stderr.read().decode()
    assert "Traceback" not in terminal and terminal.count("refused:") >= 5, terminal[-3000:]


def test_the_studio_allows_remote_code_only_when_started_so(tmp_path):
    from toolkit.config import load_config
    from toolkit.errors import ToolkitError
    from toolkit.studio import Studio

    cfg = load_config({"task": "sentiment", "trust_remote_code": True})
    with pytest.raises(ToolkitError, match="Start the studio with --allow-remote-code"):
        Studio(tmp_path / "runs").queue.check_no_remote_code(cfg)
    Studio(tmp_path / "runs", allow_remote_code=True).queue.check_no_remote_code(cfg)
