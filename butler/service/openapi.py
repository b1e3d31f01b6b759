"""The OpenAPI 3 description of the JSON API (served at ``/api/v1/openapi.json``, shown at ``/api/v1/docs``)."""

from __future__ import annotations

from typing import Any

from .api import API

__all__ = ["spec", "OPERATIONS"]

_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "A served repository's name"}
_TYPE = {"name": "datasetType", "in": "path", "required": True, "schema": {"type": "string"}}
_DATA_ID = {"name": "dataId", "in": "query", "schema": {"type": "string"},
            "description": 'The data ID, a JSON object: {"visit": 1, "ccd": 2}'}
_RANGE = {"name": "Range", "in": "header", "schema": {"type": "string"}, "description": "bytes=START-END"}
_PATH = {"name": "path", "in": "path", "required": True, "schema": {"type": "string"},
         "description": "A file's path in the repository (checked to stay inside it)"}


def _query(name: str, description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": {"type": "string"},
            "description": description}


#: (path below /api/v1, summary, parameters, kind of answer)
OPERATIONS: tuple[tuple[str, str, tuple[dict[str, Any], ...], str], ...] = (
    ("/repositories", "The served repositories: name, URL, mapper, parents", (), "json"),
    ("/repositories/{name}", "One repository: its cfg as clients see it, mapper, parents", (_NAME,), "json"),
    ("/repositories/{name}/datasetTypes", "Dataset types and their data-ID keys", (_NAME,), "json"),
    ("/repositories/{name}/query", "Data IDs of a dataset type (with exists=true: whether each exists)",
     (_NAME, _query("datasetType", "The dataset type", True), _query("keys", "Comma-separated keys", True),
      _DATA_ID, _query("exists", "true: say whether each dataset exists")), "json"),
    ("/repositories/{name}/datasets/{datasetType}",
     "A dataset's bytes, by dataset type and data ID (ETag, Content-Length, Range)",
     (_NAME, _TYPE, _DATA_ID, _RANGE), "bytes"),
    ("/repositories/{name}/datasets/{datasetType}/header", "A dataset's FITS header cards",
     (_NAME, _TYPE, _DATA_ID), "json"),
    ("/repositories/{name}/datasets/{datasetType}/provenance",
     "A dataset's content digest and lineage (its provenance record, inputs followed; null without one)",
     (_NAME, _TYPE, _DATA_ID, _query("depth", "Levels of inputs to follow (default: all)")), "json"),
    ("/repositories/{name}/files/{path}", "A file of the repository (for remote Butler inputs)",
     (_NAME, _PATH, _RANGE), "bytes"),
    ("/repositories/{name}/exists", "Whether a file or directory exists",
     (_NAME, _query("path", "Path in the repository")), "json"),
    ("/repositories/{name}/list", "The files under a directory",
     (_NAME, _query("prefix", "Directory in the repository")), "json"),
    ("/repositories/{name}/registry/{operation}",
     "One read of a registry file: schema, lookup or executeQuery (for remote Butler inputs)",
     (_NAME, {"name": "operation", "in": "path", "required": True,
              "schema": {"enum": ["schema", "lookup", "executeQuery"]}},
      _query("path", "The registry file", True), _query("q", "The query, a JSON object")), "json"),
)

_ERROR = {"description": "A package error: its class and message",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _operation(summary: str, parameters: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    content = ({"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}} if kind == "bytes"
               else {"application/json": {"schema": {"type": "object"}}})
    responses: dict[str, Any] = {"200": {"description": "OK", "content": content}, "400": _ERROR, "401": _ERROR,
                                 "404": _ERROR}
    if kind == "bytes":
        responses["206"] = {"description": "The range asked for"}
        responses["416"] = {"description": "A range outside the file"}
    return {"summary": summary, "parameters": list(parameters), "responses": responses}


def spec(server: str) -> dict[str, Any]:
    """The OpenAPI document, naming ``server`` as its server."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "butler service", "version": "1",
                 "description": "Read-only access to Gen2 data repositories. Every operation is GET (and HEAD)."},
        "servers": [{"url": server}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "type": {"type": "string", "description": "The butler.errors class"},
                "message": {"type": "string"}}}}}},
        },
        "security": [{"bearer": []}],
        "paths": {API + path: {"get": _operation(summary, parameters, kind)}
                  for path, summary, parameters, kind in OPERATIONS},
    }
