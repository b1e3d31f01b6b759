"""A read-only butler service: repositories served over HTTP (`butler serve`).

`make_app` builds the ASGI application (Starlette): a versioned JSON API
under ``/api/v1/`` (`butler.service.api`) and a browser view at ``/``
(`butler.service.views`, Jinja2 templates). `serve` runs it with uvicorn.
The server reads repositories only through `butler.Butler`, `Repository`,
their storages and registries (`butler.service.catalog`); nothing it
answers writes. The client side is `butler.storage.http` and
`butler.registry.http`: ``Butler(inputs="http://host:port/NAME")``.
"""

from __future__ import annotations

from .app import make_app, serve

__all__ = ["make_app", "serve"]
