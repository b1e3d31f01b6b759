"""The ASGI application (`make_app`) and the server (`serve`).

Read-only by construction: a middleware answers every method but GET and
HEAD with 405 before any route is looked at, and every route is a GET route
(Starlette answers HEAD on each). With tokens, every request must carry
``Authorization: Bearer <token>``; a missing or wrong one is 401. Tokens are
compared in constant time and never logged (uvicorn's access log, which
records request lines only, is off).

Errors: a package error becomes its class name and message
(``{"error": {"type": ..., "message": ...}}``) for the API, a page for the
browser view, with the status its kind calls for (404 for a dataset not
found, 400 for a bad data ID or path, 500 otherwise); any other exception is
answered 500 without detail (its traceback goes to the server's log).
"""

from __future__ import annotations

import hmac
import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import (
    AliasError,
    ButlerError,
    DataIdValueError,
    DatasetNotFoundError,
    NoResults,
    RegistryError,
    RepositoryError,
    TemplateError,
    UnsafePathError,
)
from .catalog import Catalog

__all__ = ["make_app", "serve", "read_tokens", "error_status"]

_log = logging.getLogger(__name__)

#: package errors a client's request causes, by status (checked in order; anything else is 500)
_STATUS: tuple[tuple[tuple[type[ButlerError], ...], int], ...] = (
    ((NoResults, DatasetNotFoundError), 404),
    ((DataIdValueError, UnsafePathError, AliasError, TemplateError, RegistryError, RepositoryError), 400),
)


def error_status(exc: ButlerError) -> int:
    """The HTTP status of a package error."""
    for classes, status in _STATUS:
        if isinstance(exc, classes):
            return status
    return 500


def error_report(exc: ButlerError, public: Callable[[str], str] = str) -> dict[str, Any]:
    """What crosses the wire of a package error: its class name, message and plain attributes, each text
    passed through ``public`` (which names served roots by their URLs)."""
    report: dict[str, Any] = {"type": type(exc).__name__, "message": public(str(exc))}
    for attribute in ("datasetType", "repositories", "isDirectory"):
        value = getattr(exc, attribute, None)
        if isinstance(value, (str, bool)):
            report[attribute] = public(value) if isinstance(value, str) else value
        elif isinstance(value, list):
            report[attribute] = [public(str(item)) for item in value]
    return report


def read_tokens(path: str) -> frozenset[str]:
    """The tokens in a token file: one per line, blank lines and ``#`` comments ignored.

    Raises
    ------
    AccessDenied
        When the file cannot be read or holds no token (nothing would be served to anyone).
    """
    from ..errors import AccessDenied
    from ..storage import Storage

    storage, name = Storage.forFile(path)
    try:
        text = storage.readBytes(name).decode("utf-8")
    except (OSError, UnicodeError) as exc:
        raise AccessDenied(f"cannot read the token file {path}: {exc}") from None
    tokens = frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))
    if not tokens:
        raise AccessDenied(f"the token file {path} holds no token")
    return tokens


class _Guard:
    """The outermost middleware: GET and HEAD only (405 otherwise), then the bearer token when tokens are set."""

    def __init__(self, app: ASGIApp, tokens: frozenset[str]):
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            response: Response = JSONResponse(
                {"error": {"type": "RepositoryModeError",
                           "message": f"{scope['method']} is not allowed: the service is read-only (GET, HEAD)"}},
                status_code=405, headers={"Allow": "GET, HEAD"})
            await response(scope, receive, send)
            return
        if self.tokens and not self._authorised(scope):
            response = JSONResponse(
                {"error": {"type": "AccessDenied", "message": "a valid bearer token is required"}},
                status_code=401, headers={"WWW-Authenticate": 'Bearer realm="butler"'})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorised(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer":
                    return False
                given_bytes = given.strip().encode()
                # every token compared, in constant time each
                return any([hmac.compare_digest(given_bytes, t.encode()) for t in self.tokens])
        return False


async def _butler_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ButlerError)
    status = error_status(exc)
    if status == 500:
        _log.warning("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    catalog = request.app.state.catalog
    report = error_report(exc, lambda text: catalog.publicText(text, str(request.base_url)))
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": report}, status_code=status)
    from .views import error_page

    return error_page(report, status)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # the server logs the traceback (Starlette raises the exception on after this answer)
    return JSONResponse({"error": {"type": "InternalServerError",
                                   "message": f"the server failed to answer {request.url.path}"}}, status_code=500)


def make_app(roots: Sequence[str], tokens: Iterable[str] = ()) -> ASGIApp:
    """The service of the repositories at ``roots`` (and their ancestors), read-only.

    Parameters
    ----------
    roots : sequence of `str`
        Local repository roots, served by their directory names.
    tokens : iterable of `str`
        Bearer tokens accepted; none means no authentication.
    """
    from .api import routes as api_routes
    from .views import routes as view_routes

    app = Starlette(routes=[*api_routes, *view_routes],
                    exception_handlers={ButlerError: _butler_error, Exception: _internal_error})
    app.state.catalog = Catalog(roots)
    return _Guard(app, frozenset(tokens))


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (port 0: one the system picks)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def serve(roots: Sequence[str], host: str = "127.0.0.1", port: int = 8000, tokens: Iterable[str] = (),
          announce: Any = None) -> None:
    """Serve repositories until interrupted.

    Parameters
    ----------
    roots : sequence of `str`
        Local repository roots.
    host, port : `str`, `int`
        Where to listen (port 0: a free port).
    tokens : iterable of `str`
        Bearer tokens accepted (none: no authentication).
    announce : callable, optional
        Called with the server's URL once it listens.
    """
    import uvicorn

    app = make_app(roots, tokens)
    sock = listen(host, port)
    bound = sock.getsockname()[1]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{bound}"
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    if announce is not None:
        announce(url)
    server.run(sockets=[sock])
