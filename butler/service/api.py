"""The JSON API of the service, version 1 (``/api/v1/...``): GET only.

Repositories and their cfgs, dataset types and their keys, queries of data
IDs (with whether each dataset exists), a dataset's bytes by dataset type and
data ID (``ETag``, ``Content-Length``, HTTP ``Range``), its header, its
provenance; and the file, existence, listing and registry calls that
`butler.storage.http.HttpStorage` and `butler.registry.http.HttpRegistry`
make. A data ID is a JSON object in the ``dataId`` parameter; a value goes to
the mapper's checks, never into a path as given.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import IO, Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..cfg import CFG_FILENAME
from ..errors import ButlerError, DataIdValueError, DatasetNotFoundError, RegistryError
from .catalog import Catalog, Served

__all__ = ["routes", "API", "dataset_links", "parse_data_id", "json_value", "type_keys", "content_digest",
           "recorded_digest", "lineage"]

#: the prefix of every API path
API = "/api/v1"
#: bodies up to this size are sent in one piece; larger ones are streamed in chunks of it
_CHUNK = 1 << 20
_DIGESTS: OrderedDict[tuple, str] = OrderedDict()
_DIGESTS_LOCK = threading.Lock()
_DIGESTS_KEPT = 4096
#: seconds a file's modification time may follow its provenance record's time (the record is made while the file
#: is written: `butler.storage.StorageInterface.writeBytes` records the bytes before it writes them)
RECORD_SLACK = 60.0


def json_value(value: Any) -> Any:
    """A value as JSON carries it: numbers, text, booleans, None; lists for tuples; text for the rest."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [json_value(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): json_value(item) for key, item in value.items()}
    item = getattr(value, "item", None)
    if callable(item):
        return json_value(item())
    return str(value)


def parse_data_id(request: Request) -> dict[str, Any]:
    """The data ID of a request: the JSON object in its ``dataId`` parameter (empty when absent).

    Raises
    ------
    DataIdValueError
        When it is no JSON object of plain values.
    """
    text = request.query_params.get("dataId")
    if not text:
        return {}
    try:
        dataId = json.loads(text)
    except ValueError as exc:
        raise DataIdValueError(f"dataId {text!r} is no JSON object: {exc}") from None
    if not isinstance(dataId, dict) or not all(
            isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in dataId.values()):
        raise DataIdValueError(f"dataId {text!r} is no JSON object of numbers and text")
    return dataId


def dataset_links(name: str, datasetType: str, dataId: Mapping[str, Any]) -> dict[str, str]:
    """The API references of a dataset: its bytes, header and provenance (paths below the server)."""
    query = "?" + urlencode({"dataId": json.dumps(json_value(dict(dataId)), sort_keys=True)}) if dataId else ""
    base = f"{API}/repositories/{quote(name, safe='')}/datasets/{quote(datasetType, safe='')}"
    return {"bytes": base + query, "header": f"{base}/header{query}", "provenance": f"{base}/provenance{query}"}


def _catalog(request: Request) -> Catalog:
    return request.app.state.catalog


def _served(request: Request) -> Served:
    return _catalog(request).get(request.path_params["name"])


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _repository_url(request: Request, name: str) -> str:
    return f"{_base_url(request)}/{quote(name, safe='')}"


# -- content digests and ranges --------------------------------------------------------------------


def _signature(location: str) -> tuple | None:
    """The version of a provenance store at rest (its file's size and mtime); None when there is none, or
    when it is being written (it has a ``-wal`` file: a reader would share the writer's ``-shm`` file)."""
    try:
        info = os.stat(location)
    except OSError:
        return None
    return None if os.path.exists(location + "-wal") else (info.st_size, info.st_mtime_ns)


class _Stores:
    """The provenance stores of the served repositories at rest, each opened once per version of its file
    (`butler.registry.provenance.ProvenanceStore.for_reading` opens it ``immutable``: nothing is written)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, tuple[tuple | None, Any, threading.Lock]] = {}

    def get(self, storage: Any) -> tuple[Any, threading.Lock] | None:
        """The store of a storage's repository and the lock its readers hold; None when it has none."""
        from ..registry.provenance import PROVENANCE_FILENAME, ProvenanceStore

        with storage.localFile(PROVENANCE_FILENAME) as location:
            signature = _signature(location)
        with self._lock:
            known = self._open.get(location)
            if known is not None and known[0] == signature:
                return known[1], known[2]
            if known is not None:
                known[1].close()
                del self._open[location]
            store = ProvenanceStore.for_reading(storage) if signature is not None else None
            if store is None:
                return None
            self._open[location] = (signature, store, threading.Lock())
            return store, self._open[location][2]


_STORES = _Stores()


def recorded_digest(storage: Any, path: str, size: int, mtime: float) -> str | None:
    """The SHA-256 the repository's provenance records give the file at ``path``, or None.

    Only a record that describes this version of the file counts: of its size,
    and, when still pending, with that digest (`butler.provenance.lineage.current_row`);
    and no older than the file's last modification by more than `RECORD_SLACK`
    seconds (a put records a file while it writes it: a file changed in place
    later is newer than its record, and is hashed instead). The records of a
    repository being written are not read (see `_signature`): its files are hashed.
    """
    import datetime

    from ..provenance.lineage import current_row

    if not getattr(storage, "hasLocalFiles", False):
        return None
    opened = _STORES.get(storage)
    if opened is None:
        return None
    store, lock = opened
    with lock:
        row = current_row(store, storage, path, size)
    if row is None or datetime.datetime.fromisoformat(row["time"]).timestamp() + RECORD_SLACK < mtime:
        return None
    return row["sha256"]


def content_digest(stream: IO[bytes], storage: Any = None, path: str | None = None) -> str:
    """The SHA-256 of a stream's whole content, kept per version of a local file (device, inode, size,
    modification time), so each version is looked up once: the digest its provenance record gives
    (`recorded_digest`, when ``storage`` and ``path`` name the file and it has one; nothing is read),
    else the hash of the stream."""
    key = info = None
    fileno = getattr(stream, "fileno", None)
    if fileno is not None:
        try:
            info = os.fstat(fileno())
            key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        except (OSError, ValueError):
            key = None
    if key is not None:
        with _DIGESTS_LOCK:
            if key in _DIGESTS:
                _DIGESTS.move_to_end(key)
                return _DIGESTS[key]
    value = None
    if info is not None and storage is not None and path is not None:
        value = recorded_digest(storage, path, info.st_size, info.st_mtime)
    if value is None:
        stream.seek(0)
        digest = hashlib.sha256()
        while block := stream.read(_CHUNK):
            digest.update(block)
        value = digest.hexdigest()
    if key is not None:
        with _DIGESTS_LOCK:
            _DIGESTS[key] = value
            while len(_DIGESTS) > _DIGESTS_KEPT:
                _DIGESTS.popitem(last=False)
    return value


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """``(start, end)`` (end exclusive) of a one-range ``Range`` header; None to send the whole file;
    False when the range cannot be satisfied."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if not first:
            count = int(last)
            return (max(size - count, 0), size) if count > 0 else False
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start >= size or end <= start:
        return False
    return start, min(end, size)


def _chunks(stream: IO[bytes], start: int, length: int) -> Iterator[bytes]:
    try:
        stream.seek(start)
        while length > 0:
            block = stream.read(min(_CHUNK, length))
            if not block:
                return
            length -= len(block)
            yield block
    finally:
        stream.close()


def file_response(request: Request, storage: Any, path: str, headers: Mapping[str, str] | None = None) -> Response:
    """The file at ``path`` in ``storage``: ETag (its content digest), Content-Length, one-range Range
    (206, 416), If-None-Match (304), If-Match (412), If-Range; HEAD sends the headers only.

    Raises
    ------
    DatasetNotFoundError
        When there is no file there (``isDirectory`` tells a directory).
    """
    try:
        stream = storage.openRead(path)
    except DatasetNotFoundError as exc:
        if path and storage.exists(path):
            exc.isDirectory = True  # type: ignore[attr-defined]  # sent with the report: a client's exists
        raise
    return stream_response(request, stream, headers, storage, path)


def stream_response(request: Request, stream: IO[bytes], headers: Mapping[str, str] | None = None,
                    storage: Any = None, path: str | None = None) -> Response:
    """The content of a seekable stream, as `file_response` sends a file (the stream is closed; ``storage``
    and ``path``, when given, name its file for `content_digest`)."""
    streaming = False
    try:
        size = stream.seek(0, os.SEEK_END)
        etag = f'"{content_digest(stream, storage, path)}"'
        common = {"ETag": etag, "Accept-Ranges": "bytes", **(headers or {})}
        if_match = request.headers.get("if-match")
        if if_match is not None and if_match not in ("*", etag):
            return Response(status_code=412, headers=common)
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=common)
        wanted = _byte_range(request.headers.get("range"), size)
        if_range = request.headers.get("if-range")
        if if_range is not None and if_range != etag:
            wanted = None
        if wanted is False:
            return Response(status_code=416, headers={**common, "Content-Range": f"bytes */{size}"})
        start, end = wanted if isinstance(wanted, tuple) else (0, size)
        status = 206 if isinstance(wanted, tuple) else 200
        if status == 206:
            common["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        common["Content-Length"] = str(end - start)
        media = "application/octet-stream"
        if request.method == "HEAD":
            return Response(status_code=status, headers=common, media_type=media)
        if end - start <= _CHUNK:
            stream.seek(start)
            return Response(stream.read(end - start), status_code=status, headers=common, media_type=media)
        streaming = True
        return StreamingResponse(_chunks(stream, start, end - start), status_code=status, headers=common,
                                 media_type=media)
    finally:
        if not streaming:
            stream.close()


# -- repositories ----------------------------------------------------------------------------------


def _summary(request: Request, served: Served) -> dict[str, Any]:
    catalog = _catalog(request)
    parents = []
    for root in served.parentRoots():
        name = catalog.nameOf(root)
        parents.append(_repository_url(request, name) if name is not None else None)
    return {"name": served.name, "url": _repository_url(request, served.name), "given": served.given,
            "mapper": served.mapperName(), "parents": parents,
            "api": f"{API}/repositories/{quote(served.name, safe='')}"}


def index(request: Request) -> Response:
    return JSONResponse({"version": 1, "repositories": f"{API}/repositories", "openapi": f"{API}/openapi.json",
                         "docs": f"{API}/docs"})


def repositories(request: Request) -> Response:
    return JSONResponse({"repositories": [_summary(request, s) for s in _catalog(request).served.values()]})


def repository(request: Request) -> Response:
    served = _served(request)
    cfg = served.repository.cfg
    view = _catalog(request).cfgView(served, _base_url(request))
    return JSONResponse({**_summary(request, served), "mapperArgs": json_value(dict(cfg.mapperArgs or {})),
                         "policy": None if cfg.policy is None else json_value(cfg.policy.toDict()),
                         "cfg": view.decode("utf-8") if view is not None else None})


def type_keys(butler: Any, datasetType: str) -> dict[str, str]:
    """``{key: type name}`` of a dataset type's data-ID keys (none for a type the mapper makes without keys:
    ``<type>_filename``, a config)."""
    try:
        keys = butler.getKeys(datasetType) or {}
    except (KeyError, ButlerError):
        return {}
    return {key: getattr(kind, "__name__", str(kind)) for key, kind in keys.items()}


def dataset_types(request: Request) -> Response:
    butler = _served(request).butler
    return JSONResponse({"datasetTypes": {t: type_keys(butler, t) for t in sorted(butler.getDatasetTypes())}})


def query(request: Request) -> Response:
    """Data IDs of a dataset type: the ``keys`` asked for, restricted by ``dataId``; with ``exists``."""
    served = _served(request)
    params = request.query_params
    datasetType = params.get("datasetType")
    keys = [key for key in (params.get("keys") or "").split(",") if key]
    if not datasetType or not keys:
        raise DataIdValueError("query needs datasetType and keys (comma-separated data-ID keys)")
    dataId = parse_data_id(request)
    butler = served.butler
    rows = butler.queryMetadata(datasetType, keys, dataId)
    dataIds = [{**dataId, **dict(zip(keys, row if len(keys) > 1 else (row,)))} for row in rows]
    answer: dict[str, Any] = {"datasetType": datasetType, "keys": keys, "dataIds": json_value(dataIds)}
    if params.get("exists", "").lower() in ("1", "true", "yes"):
        answer["exists"] = [butler.datasetExists(datasetType, d) for d in dataIds]
    answer["links"] = [dataset_links(served.name, datasetType, d) for d in dataIds]
    return JSONResponse(answer)


# -- datasets --------------------------------------------------------------------------------------


def dataset(request: Request) -> Response:
    """A dataset's bytes (its file, found by the mapper's search from dataset type and data ID)."""
    served = _served(request)
    found = served.locate(request.path_params["datasetType"], parse_data_id(request))
    name = _catalog(request).nameOf(found.repository.root) or served.name
    location = f"{API}/repositories/{quote(name, safe='')}/files/{quote(found.path)}"
    return file_response(request, found.storage, found.path, {"Content-Location": location,
                                                               "X-Butler-Repository": _repository_url(request, name)})


def header_cards(header: Any) -> list[list[Any]]:
    """``[keyword, value, comment]`` of every card of a FITS header, in order (values as JSON carries them)."""
    return [[card.keyword, json_value(card.value) if type(card.value).__name__ != "Undefined" else None,
             card.comment] for card in header.cards]


def read_header(served: Served, datasetType: str, dataId: Mapping[str, Any]) -> Any:
    """A dataset's FITS header as stored (structural cards such as ``NAXIS`` included): the header of
    the HDU its location names, else of the first HDU, read from its file through the storage.

    Raises
    ------
    FormatterError
        When the file is no FITS file.
    """
    from astropy.io import fits

    from ..errors import FormatterError

    found = served.locate(datasetType, dataId)
    with found.storage.openRead(found.path) as stream:
        try:
            with fits.open(stream, lazy_load_hdus=True) as hdul:
                return hdul[found.hdu or 0].header.copy()
        except (OSError, ValueError, IndexError) as exc:
            raise FormatterError(f"{datasetType} {dict(dataId)!r} in served repository {served.name} has no "
                                 f"FITS header ({found.path}): {exc}") from None


def header(request: Request) -> Response:
    served = _served(request)
    datasetType = request.path_params["datasetType"]
    return JSONResponse({"datasetType": datasetType, "cards": header_cards(read_header(
        served, datasetType, parse_data_id(request)))})


def lineage(catalog: Catalog, served: Served, datasetType: str, dataId: Mapping[str, Any], baseUrl: str,
            depth: int | None = None) -> dict[str, Any] | None:
    """A dataset's provenance record (`butler.Butler.provenance`, inputs followed ``depth`` levels, None: all)
    as plain data, the shape of ``butler provenance --format json``, with no path of the server's disk
    (`Catalog.publicRecord`); None when its file has no record."""
    from ..errors import NoResults

    try:
        record = served.butler.provenance(datasetType, dict(dataId), depth=depth)
    except NoResults:
        served.locate(datasetType, dataId)  # no dataset at all is the client's 404
        return None
    return catalog.publicRecord(json.loads(json.dumps(record.to_dict(), default=str)), baseUrl)


def _depth(request: Request) -> int | None:
    text = request.query_params.get("depth")
    if not text:
        return None
    if not text.isdigit():
        raise DataIdValueError(f"depth {text!r} is no count of levels (a whole number >= 0)")
    return int(text)


def provenance(request: Request) -> Response:
    """Where a dataset came from: its content digest, and its provenance record with its inputs followed
    (``lineage``: `lineage`, None when its file has none); ``depth`` limits the levels followed."""
    served = _served(request)
    catalog = _catalog(request)
    datasetType = request.path_params["datasetType"]
    dataId = parse_data_id(request)
    found = served.locate(datasetType, dataId)
    with found.storage.openRead(found.path) as stream:
        digest = content_digest(stream, found.storage, found.path)
    name = catalog.nameOf(found.repository.root) or served.name
    return JSONResponse({"datasetType": datasetType, "dataId": json_value(dataId), "digest": digest,
                         "repository": _repository_url(request, name),
                         "lineage": lineage(catalog, served, datasetType, dataId, _base_url(request),
                                            _depth(request))})


# -- what the http storage and registry ask ------------------------------------------------------------


def files(request: Request) -> Response:
    """A file of a served repository (links out of the served roots: `Catalog.checkServable`); its
    ``repositoryCfg.yaml`` as clients see it (`Catalog.cfgView`)."""
    served = _served(request)
    path = request.path_params["path"]
    if path == CFG_FILENAME:
        view = _catalog(request).cfgView(served, _base_url(request))
        if view is not None:
            return stream_response(request, io.BytesIO(view))
    _catalog(request).checkServable(served, served.storage, path)
    return file_response(request, served.storage, path)


def _servable(request: Request, served: Served, path: str) -> bool:
    """Whether `files` would serve what is at ``path`` (`Catalog.checkServable`; a refusal is logged)."""
    try:
        _catalog(request).checkServable(served, served.storage, path)
    except DatasetNotFoundError:
        return False
    return True


def exists(request: Request) -> Response:
    """Whether a file or directory is at ``path`` (one that links lead out of the served roots is not)."""
    served = _served(request)
    path = request.query_params.get("path", "")
    return JSONResponse({"exists": served.storage.exists(path) and _servable(request, served, path) if path else True})


def listing(request: Request) -> Response:
    """The files under ``prefix`` (none under a directory that links lead out of the served roots)."""
    served = _served(request)
    prefix = request.query_params.get("prefix", "")
    return JSONResponse({"names": served.storage.listNames(prefix) if _servable(request, served, prefix) else []})


def _query_json(request: Request) -> dict[str, Any]:
    try:
        value = json.loads(request.query_params.get("q") or "{}")
    except ValueError as exc:
        raise RegistryError(f"registry query {request.query_params.get('q')!r} is no JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RegistryError("a registry query is a JSON object")
    return value


def _key(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


_REGISTRY_OPERATIONS = ("schema", "lookup", "executeQuery")


def registry(request: Request) -> Response:
    """Run one read of the registry protocol (``schema``, ``lookup``, ``executeQuery``) on a registry file."""
    served = _served(request)
    operation = request.path_params["operation"]
    if operation not in _REGISTRY_OPERATIONS:
        raise RegistryError(f"no registry operation {operation!r}; the operations: {', '.join(_REGISTRY_OPERATIONS)}")
    reg, lock = served.registry(request.query_params.get("path", ""))
    q = _query_json(request)
    with lock:
        if operation == "schema":
            return JSONResponse({"tables": {table: reg.columns(table) for table in reg.tables()}})
        if operation == "lookup":
            dataId = {_key(key): value for key, value in q.get("dataId", [])}
            rows = reg.lookup(q.get("properties", []), q.get("reference", []), dataId)
        else:
            whereFields = q.get("whereFields")
            rows = reg.executeQuery(q.get("returnFields", []), q.get("joinClause", []),
                                    [_key(w) for w in whereFields] if whereFields is not None else None,
                                    q.get("range"), q.get("values", []))
    return JSONResponse({"rows": rows if _plain_rows(rows) else json_value([list(row) for row in rows])})


def _plain_rows(rows: list[tuple]) -> bool:
    """Whether registry rows hold only what JSON carries as it is (the usual case: no conversion needed)."""
    return all(value is None or type(value) in (int, float, str) for row in rows for value in row)


def openapi(request: Request) -> Response:
    from .openapi import spec

    return JSONResponse(spec(_base_url(request)))


_REPO = API + "/repositories/{name}"

routes = [
    Route(API, index),
    Route(API + "/openapi.json", openapi),
    Route(API + "/repositories", repositories),
    Route(_REPO, repository),
    Route(_REPO + "/datasetTypes", dataset_types),
    Route(_REPO + "/query", query),
    Route(_REPO + "/datasets/{datasetType}", dataset),
    Route(_REPO + "/datasets/{datasetType}/header", header),
    Route(_REPO + "/datasets/{datasetType}/provenance", provenance),
    Route(_REPO + "/files/{path:path}", files),
    Route(_REPO + "/exists", exists),
    Route(_REPO + "/list", listing),
    Route(_REPO + "/registry/{operation:str}", registry),
]
