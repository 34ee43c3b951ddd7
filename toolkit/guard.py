"""Who may talk to a toolkit server: requests must name one of its own hosts, and state changes must come from its
own pages (or from no page at all, as gradio_client and curl send them).

A web page on another site can still make the user's browser send requests to 127.0.0.1: directly (its Origin is
then foreign) or through DNS rebinding, where the page's own name re-resolves to 127.0.0.1 (its Host is then
foreign). Jupyter checks the Host header for the same reason, and MLflow has --allowed-hosts.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from urllib.parse import urlsplit

from starlette.middleware import Middleware

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


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


DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(scheme: str, authority: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of ``scheme://authority``, the default port filled in; None when malformed."""
    try:
        parts = urlsplit(f"{scheme}://{authority}")
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    return (scheme, parts.hostname.lower(), port) if parts.hostname and port else None


def parse_origin(value: str) -> tuple[str, str, int] | None:
    """An Origin header (or an --allowed-origins entry) as (scheme, host, port); None for 'null' or a malformed one.
    A host written '*.example.org' stays so: it matches any name under example.org."""
    scheme, sep, rest = value.strip().partition("://")
    if not sep or scheme.lower() not in DEFAULT_PORTS:
        return None
    wildcard = rest.startswith("*.")
    found = origin_of(scheme.lower(), rest[1:] if wildcard else rest)
    return (found[0], "*" + found[1], found[2]) if found and wildcard else found


def origin_matches(origin: tuple[str, str, int], allowed: tuple[str, str, int]) -> bool:
    if allowed[1].startswith("*."):
        return origin[0] == allowed[0] and origin[2] == allowed[2] and origin[1].endswith(allowed[1][1:])
    return origin == allowed


def header_values(scope) -> dict[str, list[str]]:
    """Every header's values, in order, by lower-case name (a repeated header keeps all of its values)."""
    values: dict[str, list[str]] = {}
    for key, value in scope.get("headers", []):
        values.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return values


PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port")


def first(values: dict[str, list[str]], name: str) -> str | None:
    """A proxy header's first value: a proxy appends its own to a list, the first was set by the first proxy."""
    found = values.get(name)
    return found[0].split(",")[0].strip() if found else None


class HostGuard:
    """ASGI middleware, outermost: who may talk to the server, and which pages may change its state.

    - 400 for a request with more than one Host (or Origin) header: which one counts would depend on the reader;
    - 421 for a Host that is not one of ``names``;
    - 403 for a state-changing request (any method but GET and HEAD, a CORS preflight and a websocket too) whose
      Origin is not the server's own origin (the same scheme, host and port as the request's Host) or one of
      ``origins``. A request without an Origin (not from a browser page: gradio_client, curl) passes;
    - no CORS header for any other origin, so another origin's page cannot read the answers either;
    - proxy headers (X-Forwarded-*, Forwarded) are dropped unless the request comes from one of ``trusted_proxies``:
      from one of those, X-Forwarded-Proto and X-Forwarded-Host say what the server's own origin is."""

    def __init__(self, app, names: set[str], origins=(), trusted_proxies=()):
        self.app, self.names = app, {n.lower() for n in names}
        self.suffixes = tuple(n for n in self.names if n.startswith("."))  # ".gradio.live": any name under it
        self.origins = [o for o in (parse_origin(x) for x in origins) if o]
        self.trusted_proxies = {p.strip().lower().strip("[]") for p in trusted_proxies if p.strip()}

    def allows(self, host: str) -> bool:
        return host in self.names or (bool(self.suffixes) and host.endswith(self.suffixes))

    def from_trusted_proxy(self, scope) -> bool:
        client = scope.get("client")
        return bool(client) and str(client[0]).lower() in self.trusted_proxies

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        values = header_values(scope)
        if len(values.get("host", [])) > 1 or len(values.get("origin", [])) > 1:
            return await refuse(scope, send, 400, "refused: a request may carry one Host and one Origin header")
        proxied = self.from_trusted_proxy(scope)
        if not proxied:  # a client may not tell the server who it is or where the request came from
            kept = [(k, v) for k, v in scope["headers"] if k.decode("latin-1").lower() not in PROXY_HEADERS]
            scope = {**scope, "headers": kept}
            values = {k: v for k, v in values.items() if k not in PROXY_HEADERS}
        authority = (proxied and first(values, "x-forwarded-host")) or next(iter(values.get("host", [])), "")
        host = host_name(authority)
        if not self.allows(host):
            return await refuse(
                scope,
                send,
                421,
                f"this server does not answer for host '{host or '(none)'}': start "
                f"it with --allowed-hosts {host or 'NAME'} if that name is yours",
            )
        origin = next(iter(values.get("origin", [])), None)
        if origin is None:
            return await self.app(scope, receive, send)
        scheme = (proxied and first(values, "x-forwarded-proto")) or (
            "https" if scope["scheme"] in ("https", "wss") else "http"
        )
        own = origin_of(scheme.lower(), authority)
        page = parse_origin(origin)
        allowed = page is not None and (page == own or any(origin_matches(page, o) for o in self.origins))
        writes = scope["type"] == "websocket" or scope.get("method", "GET") not in ("GET", "HEAD")
        if writes and not allowed:
            return await refuse(
                scope,
                send,
                403,
                f"refused: a page from {origin} may not change this server's state (only its own pages may, and "
                f"origins given with --allowed-origins)",
            )
        if allowed and page != own:  # an origin given with --allowed-origins: CORS lets its pages call the server
            if scope.get("method") == "OPTIONS":
                return await preflight(scope, send, origin, values)
            return await self.app(scope, receive, with_cors(send, origin))
        return await self.app(scope, receive, without_cors(send))


def without_cors(send):
    """Drop the CORS headers Gradio adds (it grants any localhost page): the server's own pages need none."""

    async def sending(message):
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if not k.lower().startswith(b"access-control-")]
            message = {**message, "headers": headers}
        await send(message)

    return sending


def with_cors(send, origin: str):
    async def sending(message):
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if not k.lower().startswith(b"access-control-")]
            headers += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
                (b"vary", b"Origin"),
            ]
            message = {**message, "headers": headers}
        await send(message)

    return sending


async def preflight(scope, send, origin: str, values: dict[str, list[str]]) -> None:
    """A CORS preflight from an origin given with --allowed-origins: the methods and headers it asks for."""
    headers = [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-allow-methods", b"GET, POST, PUT, DELETE, OPTIONS"),
        (b"access-control-max-age", b"600"),
        (b"vary", b"Origin"),
        (b"content-length", b"0"),
    ]
    asked = first(values, "access-control-request-headers")
    if asked:
        headers.append((b"access-control-allow-headers", ", ".join(values["access-control-request-headers"]).encode()))
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


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


def guarded(
    host: str,
    allowed_hosts: list[str] | tuple[str, ...] = (),
    allowed_origins: list[str] | tuple[str, ...] = (),
    trusted_proxies: list[str] | tuple[str, ...] = (),
) -> dict:
    """Keyword arguments for ``Blocks.launch``: the FastAPI app Gradio builds gets the guard as its outermost
    middleware."""
    guard = Middleware(
        HostGuard, names=own_names(host, allowed_hosts), origins=allowed_origins, trusted_proxies=trusted_proxies
    )
    # uvicorn would believe X-Forwarded-For/-Proto from 127.0.0.1 and rewrite the client and scheme before the guard
    # sees them: the guard decides which proxy to believe (--trusted-proxy), so uvicorn believes none.
    os.environ["FORWARDED_ALLOW_IPS"] = ""

    @contextlib.asynccontextmanager
    async def outermost(app):
        # Gradio adds its CORS middleware (which grants any localhost page) after the app's own middleware, so
        # outside the guard. Before the first request is served, put the guard outside everything.
        app.user_middleware = [guard, *(m for m in app.user_middleware if m.cls is not HostGuard)]
        app.middleware_stack = None  # rebuilt from user_middleware on the next request
        yield

    return {"app_kwargs": {"middleware": [guard], "lifespan": outermost}}
