"""The browser view: server-side HTML pages (Jinja2 templates in ``templates/``), no JavaScript.

``/``: the served repositories; ``/repositories/NAME``: one repository, its
dataset types and a query form; ``.../query``: the data IDs found, each
linked to its page; ``.../datasets/TYPE?KEY=VALUE``: one dataset, its FITS
header as a table (as stored, as the ``<type>_md`` dataset gives it), a PNG
preview of an image (ZScale), the first rows of a table, its lineage (the
provenance record: run, config, inputs with their files and digests, each
input's own record folded below it), and the API references of the dataset.
``/api/v1/docs`` lists the API from its OpenAPI description.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..errors import ButlerError, DataIdValueError, MapperError
from .api import API, dataset_links, header_cards, json_value, lineage, read_header, type_keys
from .catalog import Served

__all__ = ["routes", "error_page", "preview_png"]

#: form fields that are no data-ID keys
_RESERVED = ("datasetType", "keys", "exists", "where")
#: the longest side of a preview, in pixels
_PREVIEW_SIDE = 800
#: rows of a table shown
_TABLE_ROWS = 20


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("butler.service", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined)


def _page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_environment().get_template(template).render(api=API, **context), status_code=status)


def error_page(report: Mapping[str, Any], status: int) -> Response:
    """A package error as a page: its class and message (`butler.service.app.error_report`)."""
    return _page("error.html", status, title=report["type"], error=report["type"], message=report["message"])


def _served(request: Request) -> Served:
    return request.app.state.catalog.get(request.path_params["name"])


def _form_data_id(request: Request, served: Served, datasetType: str) -> dict[str, Any]:
    """The data ID in a page's query string (``KEY=VALUE`` parameters, and the form's ``where``:
    ``KEY=VALUE`` words), each value of its key's type."""
    from ..cli import UserError, parse_data_id

    items = [f"{key}={value}" for key, value in request.query_params.multi_items()
             if key not in _RESERVED and value != ""]
    items += request.query_params.get("where", "").split()
    try:
        return parse_data_id(items, type_keys(served.butler, datasetType))
    except UserError as exc:
        raise DataIdValueError(f"{datasetType} in served repository {served.name}: {exc.message}") from None


def _page_link(name: str, datasetType: str, dataId: Mapping[str, Any]) -> str:
    return (f"/repositories/{quote(name, safe='')}/datasets/{quote(datasetType, safe='')}?"
            + urlencode({k: json_value(v) for k, v in dataId.items()}))


def index(request: Request) -> Response:
    catalog = request.app.state.catalog
    return _page("index.html", title="Repositories", repositories=list(catalog.served.values()))


def repository(request: Request) -> Response:
    served = _served(request)
    catalog = request.app.state.catalog
    butler = served.butler
    types = {t: sorted(type_keys(butler, t)) for t in sorted(butler.getDatasetTypes())}
    parents = [(catalog.nameOf(root), root) for root in served.parentRoots()]
    return _page("repository.html", title=served.name, served=served, mapper=served.mapperName(),
                 parents=[name for name, _ in parents if name is not None], types=types,
                 selected=request.query_params.get("datasetType", ""))


def query(request: Request) -> Response:
    served = _served(request)
    datasetType = request.query_params.get("datasetType", "")
    butler = served.butler
    keys = [k.strip() for k in request.query_params.get("keys", "").split(",") if k.strip()]
    if not keys:
        keys = sorted(type_keys(butler, datasetType))
    if not datasetType or not keys:
        raise DataIdValueError(f"a query of served repository {served.name} needs a dataset type with keys")
    dataId = _form_data_id(request, served, datasetType)
    rows = butler.queryMetadata(datasetType, keys, dataId)
    found = []
    for row in rows:
        values = {**dataId, **dict(zip(keys, row if len(keys) > 1 else (row,)))}
        found.append({"values": [values[k] for k in keys], "exists": butler.datasetExists(datasetType, values),
                      "page": _page_link(served.name, datasetType, values),
                      "bytes": dataset_links(served.name, datasetType, values)["bytes"]})
    return _page("query.html", title=f"{datasetType} in {served.name}", served=served, datasetType=datasetType,
                 keys=keys, dataId=dataId, found=found)


def _kind(obj: Any) -> str:
    """``image`` (2-d pixels), ``table`` (rows) or ``other``."""
    from astropy.table import Table

    if isinstance(obj, Table):
        return "table"
    data = getattr(obj, "data", obj)
    return "image" if getattr(data, "ndim", None) == 2 and getattr(data, "dtype", None) is not None else "other"


def _table_rows(table: Any) -> tuple[list[str], list[list[str]]]:
    names = list(table.colnames)
    return names, [[str(row[name]) for name in names] for row in table[:_TABLE_ROWS]]


def _read(served: Served, datasetType: str, dataId: Mapping[str, Any]) -> Any:
    """The dataset, read once its file has passed `Served.locate`'s check (a composite has no one file)."""
    try:
        served.locate(datasetType, dataId)
    except MapperError:
        pass
    return served.butler.get(datasetType, dataId)


def dataset(request: Request) -> Response:
    served = _served(request)
    datasetType = request.path_params["datasetType"]
    dataId = _form_data_id(request, served, datasetType)
    obj = _read(served, datasetType, dataId)
    try:
        cards = header_cards(read_header(served, datasetType, dataId))
    except ButlerError as exc:  # a dataset without a FITS header (a pickle, a YAML file)
        cards, headerProblem = [], f"{type(exc).__name__}: {exc}"
    else:
        headerProblem = ""
    kind = _kind(obj)
    columns, rows = _table_rows(obj) if kind == "table" else ([], [])
    preview = (f"/repositories/{quote(served.name, safe='')}/datasets/{quote(datasetType, safe='')}/preview.png?"
               + urlencode({k: json_value(v) for k, v in dataId.items()})) if kind == "image" else None
    return _page("dataset.html", title=f"{datasetType} {json.dumps(json_value(dataId))}", served=served,
                 datasetType=datasetType, dataId=dataId, cards=cards, headerProblem=headerProblem, kind=kind,
                 columns=columns, rows=rows, preview=preview, summary=repr(obj)[:2000] if kind == "other" else "",
                 links=dataset_links(served.name, datasetType, dataId),
                 lineage=lineage(request.app.state.catalog, served, datasetType, dataId,
                                 str(request.base_url).rstrip("/")))


def preview_png(pixels: Any) -> bytes:
    """A grey PNG of 2-d pixels, scaled by ZScale, row 0 at the bottom, at most `_PREVIEW_SIDE` on a side."""
    import numpy as np
    from astropy.visualization import ZScaleInterval
    from PIL import Image

    data = np.asarray(pixels, dtype=float)
    step = max(1, -(-max(data.shape) // _PREVIEW_SIDE))
    data = data[::step, ::step]
    finite = np.isfinite(data)
    low, high = ZScaleInterval().get_limits(data[finite]) if finite.any() else (0.0, 1.0)
    scaled = np.clip((np.where(finite, data, low) - low) / ((high - low) or 1.0), 0.0, 1.0)
    out = io.BytesIO()
    Image.fromarray((scaled[::-1] * 255).astype(np.uint8), mode="L").save(out, format="PNG")
    return out.getvalue()


def preview(request: Request) -> Response:
    served = _served(request)
    datasetType = request.path_params["datasetType"]
    obj = _read(served, datasetType, _form_data_id(request, served, datasetType))
    if _kind(obj) != "image":
        raise DataIdValueError(f"{datasetType} in served repository {served.name} is no image: no preview")
    return Response(preview_png(getattr(obj, "data", obj)), media_type="image/png")


def docs(request: Request) -> Response:
    from .openapi import OPERATIONS

    return _page("docs.html", title="API", operations=OPERATIONS)


routes = [
    Route("/", index),
    Route(API + "/docs", docs),
    Route("/repositories/{name}", repository),
    Route("/repositories/{name}/query", query),
    Route("/repositories/{name}/datasets/{datasetType}", dataset),
    Route("/repositories/{name}/datasets/{datasetType}/preview.png", preview),
]
