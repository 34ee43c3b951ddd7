"""Servers answer only for their own host, and only their own pages (or no page: gradio_client, curl) change state.
Checked with raw HTTP, as a DNS-rebinding page or another site's page would send it."""

from __future__ import annotations

import http.client
import json

import pytest
from conftest import free_port

from toolkit.guard import HostGuard, host_name, origin_matches, origin_of, own_names, parse_origin


def request(
    port: int,
    method: str,
    path: str,
    host: str,
    origin: str | None = None,
    body: bytes = b"",
    content_type: str = "application/json",
) -> tuple[int, bytes]:
    status, _, answer = raw_request(port, method, path, [("Host", host), ("Content-Type", content_type)], origin, body)
    return status, answer


def raw_request(
    port: int, method: str, path: str, headers: list, origin: str | None = None, body: bytes = b"", source="127.0.0.1"
) -> tuple[int, dict, bytes]:
    """One request with exactly these headers (repeated ones too), from ``source``: (status, CORS headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for name, value in [*headers, *([("Origin", origin)] if origin is not None else [])]:
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    cors = {k.lower(): v for k, v in response.getheaders() if k.lower().startswith("access-control-")}
    return response.status, cors, response.read()


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


def test_origins_are_compared_by_scheme_host_and_port():
    assert parse_origin("http://localhost") == ("http", "localhost", 80)
    assert parse_origin("https://[::1]:8443") == ("https", "::1", 8443)
    assert parse_origin("https://*.gradio.live") == ("https", "*.gradio.live", 443)
    assert parse_origin("null") is None and parse_origin("file://x") is None and parse_origin("http://a:99999") is None
    assert origin_of("http", "127.0.0.1:7860") == ("http", "127.0.0.1", 7860)
    assert origin_matches(("https", "abc.gradio.live", 443), ("https", "*.gradio.live", 443))
    assert not origin_matches(("http", "abc.gradio.live", 80), ("https", "*.gradio.live", 443))
    assert not origin_matches(("https", "gradio.live.evil.example", 443), ("https", "*.gradio.live", 443))


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

        # Same origin means the same scheme, host and port: a page on another local port is another site too.
        victim = runs / "victim"
        victim.mkdir(parents=True)
        (victim / ".toolkit-run").write_text("")
        json_headers = [("Host", own), ("Content-Type", "application/json")]
        start = json.dumps({"data": ["sentiment_minilm.yaml", [], "started"]}).encode()
        delete = json.dumps({"data": ["delete", "victim", "victim"]}).encode()
        for page in ("http://localhost:3000", "http://127.0.0.1:9999", "http://[::1]:8888", f"https://{own}", "null"):
            for path, call_body in (("/gradio_api/call/start", start), ("/gradio_api/call/action", delete)):
                status, cors, answer = raw_request(port, "POST", path, json_headers, page, call_body)
                assert status == 403 and not cors and b"may not change" in answer, (page, path, status, cors)
            preflight = [("Host", own), ("Access-Control-Request-Method", "POST")]
            assert raw_request(port, "OPTIONS", "/gradio_api/call/start", preflight, page)[:2] == (403, {}), page
            status, cors, _ = raw_request(port, "GET", "/gradio_api/info", [("Host", own)], page)
            assert status == 200 and not cors, page  # a read, whose answer the browser keeps from that page
        assert victim.is_dir() and not (runs / "started").exists() and not list(runs.glob(".studio/jobs/*"))

        # One Host header; X-Forwarded-* only from a proxy named with --trusted-proxy (none here).
        assert raw_request(port, "GET", "/config", [("Host", f"evil.example:{port}"), ("Host", own)])[0] == 400
        forged = [("Host", own), ("X-Forwarded-Host", "evil.example"), ("X-Forwarded-Proto", "https")]
        status, _, answer = raw_request(port, "GET", "/config", forged)
        assert status == 200 and json.loads(answer)["root"] == f"http://{own}"

        # The studio's own page, and clients that send no Origin (gradio_client, curl), still work.
        status, answer = request(
            port, "POST", "/gradio_api/call/runs", own, origin=f"http://{own}", body=b'{"data": []}'
        )
        assert status == 200 and "event_id" in json.loads(answer)
        status, answer = request(port, "POST", "/gradio_api/upload", own, body=body, content_type=kind)
        assert status == 200, answer
        status, _, answer = raw_request(port, "POST", "/gradio_api/call/action", json_headers, f"http://{own}", delete)
        assert status == 200
        event = json.loads(answer)["event_id"]  # the stream of the call's result ends when the deletion is done
        raw_request(port, "GET", f"/gradio_api/call/action/{event}", [("Host", own)], f"http://{own}")
        assert not victim.exists()
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


def call(guard: HostGuard, method: str, headers: list[tuple[str, str]], client: str = "127.0.0.1") -> tuple[int, dict]:
    """One request through the guard in front of an app that answers 200 with the Host and X-Forwarded-Host it saw
    and a CORS header granting everyone (as Gradio's grants localhost pages): (status, response headers)."""
    import asyncio

    seen: dict = {}

    async def app(scope, receive, send):
        seen.update({k.decode(): v.decode() for k, v in scope["headers"]})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"access-control-allow-origin", b"*")]})
        await send({"type": "http.response.body", "body": b""})

    guard.app = app
    sent: list = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {
        "type": "http", "method": method, "scheme": "http", "path": "/", "client": (client, 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }  # fmt: skip
    asyncio.run(guard(scope, receive, send))
    start = sent[0]
    return start["status"], {**{k.decode(): v.decode() for k, v in start["headers"]}, "seen": seen}


def test_a_trusted_proxy_names_the_public_origin_and_allowed_origins_get_cors():
    names = own_names("127.0.0.1", ["studio.example.org"])
    guard = HostGuard(None, names, origins=["https://app.example.org"], trusted_proxies=["127.0.0.2"])
    behind_proxy = [
        ("Host", "127.0.0.1:7860"),
        ("X-Forwarded-Host", "studio.example.org"),
        ("X-Forwarded-Proto", "https"),
    ]

    # From the proxy: the browser's page is https://studio.example.org, the server's own origin there.
    status, headers = call(guard, "POST", [*behind_proxy, ("Origin", "https://studio.example.org")], client="127.0.0.2")
    assert status == 200 and headers["seen"]["x-forwarded-host"] == "studio.example.org"
    assert "access-control-allow-origin" not in headers  # its own page needs no CORS, and nobody else gets it
    assert call(guard, "POST", [*behind_proxy, ("Origin", "http://studio.example.org")], client="127.0.0.2")[0] == 403

    # The same headers from anyone else are dropped: the own origin is then http://127.0.0.1:7860.
    status, headers = call(guard, "POST", [*behind_proxy, ("Origin", "https://studio.example.org")])
    assert status == 403 and "x-forwarded-host" not in headers["seen"]
    assert call(guard, "POST", [*behind_proxy, ("Origin", "http://127.0.0.1:7860")])[0] == 200
    assert call(guard, "GET", [("Host", "127.0.0.1:7860"), ("X-Forwarded-Host", "evil.example")])[0] == 200

    # An origin given with --allowed-origins may write, and gets CORS headers naming it (and only it).
    page = ("Origin", "https://app.example.org")
    status, headers = call(guard, "POST", [("Host", "127.0.0.1:7860"), page])
    assert status == 200 and headers["access-control-allow-origin"] == "https://app.example.org"
    preflight = [("Host", "127.0.0.1:7860"), page, ("Access-Control-Request-Method", "POST")]
    status, headers = call(guard, "OPTIONS", preflight)
    assert status == 204 and headers["access-control-allow-origin"] == "https://app.example.org"
    for other in ("http://app.example.org", "https://app.example.org:8443", "https://evil.example"):
        status, headers = call(guard, "POST", [("Host", "127.0.0.1:7860"), ("Origin", other)])
        assert status == 403 and "access-control-allow-origin" not in headers, other
        status, headers = call(guard, "GET", [("Host", "127.0.0.1:7860"), ("Origin", other)])
        assert status == 200 and "access-control-allow-origin" not in headers, other
    assert call(guard, "GET", [("Host", "127.0.0.1:7860"), ("Host", "evil.example")])[0] == 400
    assert call(guard, "GET", [("Host", "evil.example")])[0] == 421


def test_serve_and_studio_refuse_a_malformed_allowed_origin(tmp_path):
    from conftest import run_cli

    for args in (["studio", "--runs", str(tmp_path)], ["serve", str(tmp_path)]):
        done = run_cli(*args, "--allowed-origins", "app.example.org/path", "--port", str(free_port()), timeout=60)
        assert done.returncode != 0 and "--allowed-origins app.example.org/path is not an origin" in done.stderr
        assert done.stderr.count("error:") == 1 and "Traceback" not in done.stderr
