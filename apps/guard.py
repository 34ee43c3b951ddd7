"""Who may talk to a toolkit server: requests must name one of its own hosts, and state changes must come from its
own pages (or from no page at all, as gradio_client and curl send them).

A web page on another site can still make the user's browser send requests to 127.0.0.1: directly (its Origin is
then foreign) or through DNS rebinding, where the page's own name re-resolves to 127.0.0.1 (its Host is then
foreign). Jupyter checks the Host header for the same reason, and MLflow has --allowed-hosts.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def own_names(host: str, extra: list[str] | tuple[str, ...] = ()) -> set[str]:
    """The names a request may use for a server started on ``host``: loopback's names on loopback; on every interface
    (0.0.0.0, ::) also this machine's name and addresses; a named host itself; and the ``extra`` ones (a reverse
    proxy's public name)."""
    names = {n.lower().strip("[]") for n in extra if n}
    names.add(host.lower().strip("[]"))
    if is_loopback(host) or host in ("0.0.0.0", "::", ""):
        names.update(LOOPBACK_NAMES)
    if host in ("0.0.0.0", "::", ""):
        names.update(_this_machine())
    return names


def _this_machine() -> set[str]:
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            names.add(str(info[4][0]).lower())
    except OSError:
        pass
    return names


def host_name(value: str) -> str:
    """A Host or Origin header's host name: 'evil.example:7931' and 'http://evil.example' -> 'evil.example',
    '[::1]:80' -> '::1'; lower-case."""
    try:
        return (urlsplit(value if "://" in value else "//" + value).hostname or "").lower()
    except ValueError:  # a malformed header names no host of ours
        return ""


class HostGuard:
    """ASGI middleware: 421 for a Host that is not one of ``names``, 403 for a state-changing request (any method but
    GET, HEAD and OPTIONS) whose Origin names another host. A request without an Origin (not from a browser page)
    passes the second check."""

    def __init__(self, app, names: set[str]):
        self.app, self.names = app, {n.lower() for n in names}
        self.suffixes = tuple(n for n in self.names if n.startswith("."))  # ".gradio.live": any name under it

    def allows(self, host: str) -> bool:
        return host in self.names or (bool(self.suffixes) and host.endswith(self.suffixes))

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = host_name(headers.get("host", ""))
        if not self.allows(host):
            return await refuse(
                scope,
                send,
                421,
                f"this server does not answer for host '{host or '(none)'}': start "
                f"it with --allowed-hosts {host or 'NAME'} if that name is yours",
            )
        origin = headers.get("origin")
        writes = scope["type"] == "websocket" or scope.get("method", "GET") not in SAFE_METHODS
        if writes and origin is not None and not self.allows(host_name(origin)):
            return await refuse(scope, send, 403, f"refused: a page from {origin} may not change this server's state")
        return await self.app(scope, receive, send)


async def refuse(scope, send, status: int, message: str) -> None:
    body = (message + "\n").encode()
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def guarded(host: str, allowed_hosts: list[str] | tuple[str, ...] = ()) -> dict:
    """Keyword arguments for ``Blocks.launch``: the FastAPI app Gradio builds gets the guard as its middleware."""
    from starlette.middleware import Middleware

    return {"app_kwargs": {"middleware": [Middleware(HostGuard, names=own_names(host, allowed_hosts))]}}
