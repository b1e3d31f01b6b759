"""`HttpStorage`: a repository served read-only by ``butler serve``, at ``http://host:port/NAME``.

The client side of `butler.service`. Every primitive is one request to the
server's file API (``/api/v1/repositories/NAME/files/PATH``, ``.../exists``,
``.../list``), which reads the repository through its own storage, so a path
that escapes the served root is refused there as here. Writes are refused.

Reads are ranged: `openRead` gives a seekable stream that asks for the first
block of the file, then for the byte ranges a reader seeks to (astropy reading a
sub-image reads only the rows it needs). A small file arrives whole with its
first request; `exists` asks for that same first block, which the read that
usually follows uses (one round trip per ``get``). Every response is checked
for its full length: a server that dies mid-transfer or a truncated body is a
`StorageUnavailable` naming the URL (within `TIMEOUT` seconds), never data.

Credentials: the bearer token is ``BUTLER_TOKEN``, else the content of the
file named by ``BUTLER_TOKEN_FILE`` (which must be readable by its owner
only). A refused or missing token is an `AccessDenied` naming the server,
never the token. A server's error crosses the wire as the package error class
and message it raised (`raise_remote_error`); only `butler.errors` classes are
named, nothing else is looked up.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import logging
import os
import re
import socket
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import IO, Any
from urllib.parse import quote, urlsplit

from .. import errors
from ..errors import (
    AccessDenied,
    ButlerError,
    DatasetNotFoundError,
    RepositoryError,
    RepositoryModeError,
    StorageUnavailable,
    UnknownStorageError,
)
from .base import StorageInterface, _scratch_file, split_uri

__all__ = ["HttpStorage", "HttpClient", "client_for", "raise_remote_error", "TOKEN_ENV", "TOKEN_FILE_ENV"]

_log = logging.getLogger(__name__)

#: environment variable holding the bearer token
TOKEN_ENV = "BUTLER_TOKEN"
#: environment variable naming a file (mode 0600) holding the bearer token
TOKEN_FILE_ENV = "BUTLER_TOKEN_FILE"
#: seconds a request may wait for a byte before the server counts as gone (a failure is told within 10 s)
TIMEOUT = 8.0
#: bytes asked for by the first request of a read (small files arrive whole)
FIRST_BLOCK = 1 << 16
#: the least bytes asked for by a later read (astropy reads a header card block, a row, at a time)
MIN_BLOCK = 1 << 14
#: how long the first block fetched by `exists` is kept for the read that follows (seconds)
_PREFETCH_SECONDS = 2.0
_PREFETCH_ENTRIES = 256
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
#: the error attributes a server may send (plain values only): a `NoResults`'s, a directory's miss
_ERROR_ATTRIBUTES = ("datasetType", "repositories", "isDirectory")


def raise_remote_error(payload: Any, url: str, status: int) -> None:
    """Raise the package error a server reported for ``url``.

    Parameters
    ----------
    payload : `object`
        The decoded JSON body: ``{"error": {"type": class name, "message": text, ...}}``.
    url : `str`
        The request, named when the body is not such a report.
    status : `int`
        The HTTP status.

    Raises
    ------
    ButlerError
        The class of `butler.errors` the server names (looked up among that
        module's public names only, never imported), with the server's
        message; `StorageUnavailable` for a body that is no error report.
    """
    report = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(report, dict) or not isinstance(report.get("message"), str):
        raise StorageUnavailable(f"server answered {status} for {url} without an error report")
    name, message = report.get("type"), report["message"]
    cls = getattr(errors, name, None) if name in errors.__all__ else None
    if not (isinstance(cls, type) and issubclass(cls, ButlerError)):
        raise ButlerError(f"{name} (from the server, for {url}): {message}")
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)  # the message as sent: the class's own __init__ would rebuild it
    for attribute in _ERROR_ATTRIBUTES:
        if attribute in report:
            setattr(exc, attribute, report[attribute])
    raise exc


def _read_token_file(path: str) -> str:
    """The token in a file readable by its owner only (`AccessDenied` naming the file otherwise)."""
    try:
        with open(path, "rb") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            text = stream.read().decode("utf-8").strip()
    except (OSError, UnicodeError) as exc:
        raise AccessDenied(f"cannot read the token file {path} named by {TOKEN_FILE_ENV}: "
                           f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AccessDenied(f"token file {path} may be read by others (mode {stat.S_IMODE(mode):o}); "
                           "make it mode 0600")
    return text


def _token() -> str | None:
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token.strip()
    path = os.environ.get(TOKEN_FILE_ENV)
    return _read_token_file(path) if path else None


class HttpClient:
    """The connection pool to one server, with its credentials and its error mapping.

    Parameters
    ----------
    base : `str`
        ``scheme://host:port`` of the server.
    token : `str`, optional
        The bearer token sent with every request.
    """

    def __init__(self, base: str, token: str | None):
        try:
            import httpx
        except ImportError:
            raise UnknownStorageError(f"cannot read {base}: the http storage needs httpx; install it with "
                                      "pip install 'butler[serve]'") from None

        self.base = base
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._httpx = httpx
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                                        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
        self._client = httpx.Client(base_url=base, headers=headers, timeout=TIMEOUT, transport=transport)

    def close(self) -> None:
        """Close the pool's connections."""
        self._client.close()

    def request(self, path: str, params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
                what: str | None = None) -> Any:
        """GET ``path`` (below the server) and return the response, its body read whole and checked.

        Raises
        ------
        StorageUnavailable
            When the server cannot be reached, stops answering for `TIMEOUT`
            seconds, or sends a body shorter than it announced.
        AccessDenied
            On 401 or 403: naming the server and ``what`` was asked, never the token.
        ButlerError
            The package error the server reports (`raise_remote_error`), for
            any other status of 400 and above.
        """
        url = self.base + path
        httpx = self._httpx
        try:
            response = self._client.get(path, params=params, headers=headers)
        except httpx.TransportError as exc:  # refused, reset, timed out, cut short (h11 checks the length)
            raise StorageUnavailable(f"server {self.base} failed to answer {url}: "
                                     f"{type(exc).__name__}: {exc}") from None
        declared = response.headers.get("content-length")
        if declared is not None and int(declared) != len(response.content) and response.status_code != 304:
            raise StorageUnavailable(f"server {self.base} sent {len(response.content)} of {declared} bytes "
                                     f"of {url}")
        if response.status_code in (401, 403):
            refused = "refused the token" if "authorization" in self._client.headers else "asks for a token"
            raise AccessDenied(f"server {self.base} {refused} for {what or url} (status "
                               f"{response.status_code}); set {TOKEN_ENV} or {TOKEN_FILE_ENV}")
        if response.status_code == 412:  # an If-Match of a ranged read: the file is no longer the one begun
            raise StorageUnavailable(f"{what or url} changed on server {self.base} while it was read")
        if response.status_code >= 400:
            try:
                payload = response.json()
            except ValueError:
                payload = None
            raise_remote_error(payload, url, response.status_code)
        return response

    def json(self, path: str, params: Mapping[str, str] | None = None, what: str | None = None) -> Any:
        """GET ``path`` and decode its JSON body (errors as `request`)."""
        return self.request(path, params, what=what).json()


_clients: dict[tuple[str, str | None], HttpClient] = {}
_clients_lock = threading.Lock()


def client_for(uri: str) -> HttpClient:
    """The (shared) client of the server of ``uri``, with the token the environment gives now."""
    parts = urlsplit(uri)
    base = f"{parts.scheme.lower()}://{parts.netloc}"
    key = (base, _token())
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = HttpClient(base, key[1])
    return client


@atexit.register
def _close_clients() -> None:
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def split_http_root(uri: str) -> tuple[str, str, str]:
    """``(server, repository name, directory inside it)`` of an ``http(s)://host:port/NAME[/DIR]`` URI.

    Raises
    ------
    RepositoryError
        When the URI names no repository.
    """
    scheme = split_uri(uri)[0]
    parts = urlsplit(uri)
    names = [part for part in parts.path.split("/") if part]
    if scheme not in ("http", "https") or not parts.netloc or not names or parts.query or parts.fragment:
        raise RepositoryError(f"{uri!r} is no served repository: expected {scheme or 'http'}://HOST:PORT/NAME")
    return f"{scheme}://{parts.netloc}", names[0], "/".join(names[1:])


class _Prefetched:
    """First blocks fetched by `HttpStorage.exists`, kept briefly for the read that usually follows."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, url: str, response: Any) -> None:
        with self._lock:
            self._entries[url] = (time.monotonic(), response)
            while len(self._entries) > _PREFETCH_ENTRIES:
                self._entries.popitem(last=False)

    def take(self, url: str) -> Any:
        with self._lock:
            entry = self._entries.pop(url, None)
        if entry is None or time.monotonic() - entry[0] > _PREFETCH_SECONDS:
            return None
        return entry[1]


_prefetched = _Prefetched()


class _RangeReader(io.RawIOBase):
    """A seekable binary stream over a served file, read by HTTP Range requests.

    The first block comes with the opening request (the whole file when it
    is small); later reads ask for the bytes needed (at least `MIN_BLOCK`),
    each response checked for its length and, through ``If-Match``, for being
    of the same version of the file as the first.
    """

    def __init__(self, client: HttpClient, path: str, what: str, first: Any = None):
        super().__init__()
        self._client, self._path, self._what = client, path, what
        response = first if first is not None else client.request(
            path, headers={"Range": f"bytes=0-{FIRST_BLOCK - 1}"}, what=what)
        self._etag = response.headers.get("etag")
        self._block_start, self._block = 0, response.content
        self.size = self._total(response)
        self._pos = 0

    def _total(self, response: Any) -> int:
        if response.status_code != 206:
            return len(response.content)
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if match is None:
            raise StorageUnavailable(f"server {self._client.base} sent no usable Content-Range for {self._what}")
        return int(match.group(3))

    def _fetch(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the file, exactly."""
        headers = {"Range": f"bytes={start}-{end - 1}"}
        if self._etag:
            headers["If-Match"] = self._etag
        response = self._client.request(self._path, headers=headers, what=self._what)
        data = response.content
        if response.status_code == 200:  # the server sent the whole file
            data = data[start:end]
        if len(data) != end - start:
            raise StorageUnavailable(f"server {self._client.base} sent {len(data)} of {end - start} bytes "
                                     f"asked for of {self._what}")
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position in {self._what}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), max(self.size - self._pos, 0))
        if wanted == 0:
            return 0
        offset = self._pos - self._block_start
        if not (0 <= offset and offset + wanted <= len(self._block)):
            end = min(self.size, self._pos + max(wanted, MIN_BLOCK))
            self._block_start, self._block = self._pos, self._fetch(self._pos, end)
            offset = 0
        view[:wanted] = self._block[offset:offset + wanted]
        self._pos += wanted
        return wanted

    def readall(self) -> bytes:
        start, end = self._pos, self.size
        if start >= end:
            return b""
        offset = start - self._block_start
        if 0 <= offset and self._block_start + len(self._block) >= end:
            data = self._block[offset:offset + end - start]
        else:
            data = self._fetch(start, end)
        self._pos = end
        return data


class HttpStorage(StorageInterface):
    """A repository served by ``butler serve``: ``http://host:port/NAME`` (or ``https://``), read-only.

    Parameters
    ----------
    uri : `str`
        The root: the server, the served repository's name, and optionally a
        directory inside it (a calibration root).
    create : `bool`
        Ignored for an existing root; a missing root is a `RepositoryError`
        either way (nothing can be created over HTTP).
    """

    def __init__(self, uri: str, create: bool):
        server, self.name, self._dir = split_http_root(uri)
        self.root = f"{server}/{self.name}" + (f"/{self._dir}" if self._dir else "")
        self._client = client_for(self.root)
        self._api = f"/api/v1/repositories/{quote(self.name, safe='')}"
        if not self._exists(""):
            raise RepositoryError(f"no repository at {uri}" + (" (a served repository cannot be created)"
                                                               if create else ""))

    def _served(self, relpath: str) -> str:
        """The path of ``relpath`` inside the served repository."""
        if not self._dir:
            return relpath
        return f"{self._dir}/{relpath}" if relpath else self._dir

    def _file_url(self, relpath: str) -> str:
        return f"{self._api}/files/{quote(self._served(relpath))}"

    def _what(self, relpath: str) -> str:
        return self.locationWithRoot(relpath)

    # -- read primitives ---------------------------------------------------------------------------

    def _exists(self, relpath: str) -> bool:
        if not relpath:
            answer = self._client.json(f"{self._api}/exists", {"path": self._served("")}, what=self.root)
            return bool(answer["exists"])
        url = self._file_url(relpath)
        try:
            response = self._client.request(url, headers={"Range": f"bytes=0-{FIRST_BLOCK - 1}"},
                                            what=self._what(relpath))
        except DatasetNotFoundError as exc:
            return getattr(exc, "isDirectory", False) is True
        _prefetched.put(self._client.base + url, response)
        return True

    def _openRead(self, relpath: str) -> IO[bytes]:
        url = self._file_url(relpath)
        first = _prefetched.take(self._client.base + url)
        return io.BufferedReader(_RangeReader(self._client, url, self._what(relpath), first),
                                 buffer_size=MIN_BLOCK)

    @contextlib.contextmanager
    def _localFile(self, relpath: str) -> Iterator[str]:
        with _scratch_file(relpath) as local:
            response = self._client.request(self._file_url(relpath), what=self._what(relpath))
            with open(local, "wb") as out:
                out.write(response.content)
            yield local

    def _listNames(self, relpath: str) -> list[str]:
        served = self._served(relpath)
        names = self._client.json(f"{self._api}/list", {"prefix": served}, what=self._what(relpath))["names"]
        strip = len(self._dir) + 1 if self._dir else 0
        return [name[strip:] for name in names]

    # -- writes: refused ------------------------------------------------------------------------------

    def _read_only(self, relpath: str, what: str) -> RepositoryModeError:
        return RepositoryModeError(f"cannot {what} {relpath} in {self.root}: a served repository is read-only")

    def _writer(self, relpath: str) -> contextlib.AbstractContextManager[str]:
        raise self._read_only(relpath, "write")

    def writeBytes(self, path: str, data: bytes) -> None:
        """Refused: a served repository is read-only."""
        raise self._read_only(self._check(path), "write")

    def _putFile(self, localPath: str, relpath: str, mode: str) -> None:
        raise self._read_only(relpath, f"place {localPath} at")

    def _remove(self, relpath: str) -> None:
        raise self._read_only(relpath, "remove")

    def _lock(self, relpath: str) -> contextlib.AbstractContextManager[None]:
        raise self._read_only(relpath, "lock")

    # -- the server's registries -----------------------------------------------------------------------

    def registryQuery(self, operation: str, path: str, query: Any = None) -> Any:
        """Ask the server's registry at ``path`` (relative to this root) for ``operation``: ``schema``,
        ``lookup`` or ``executeQuery`` with ``query`` (sent as JSON). For `butler.registry.http`."""
        params = {"path": self._served(path)}
        if query is not None:
            params["q"] = json.dumps(query)
        return self._client.json(f"{self._api}/registry/{operation}", params, what=self._what(path))
