"""``GET /openapi.json``, and ``GET /docs``: Swagger UI from the ``swagger-ui-py`` package's
files, served by this process so that the page loads nothing from elsewhere.

The document is built once, on first use, and its bytes kept; the assets are read once each.
None of this is on the request path.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from allotment.api.described import DescribedRoute, Doc, Param
from allotment.api.errors import error_body
from allotment.api.http import raw_json_response

TAG = "Operations"

# The package's files this page uses, and what they are. Only these are served.
_PACKAGED = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
_INIT = "init.js"
ASSETS = (*_PACKAGED, _INIT)

# Relative URLs: the page works wherever the API is mounted. ``validatorUrl: null`` keeps
# Swagger UI from sending the document to its public validator.
_PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Allotment API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
"""
_INIT_SCRIPT = b"""window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    tryItOutEnabled: false,
    persistAuthorization: false,
  });
};
"""
# Everything from this origin; Swagger UI styles its elements inline and draws icons as data:.
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_REVALIDATE = "no-cache"
_ASSET_CACHE = "public, max-age=86400"


@dataclass(frozen=True, slots=True)
class _Body:
    content: bytes
    media_type: str
    etag: str

    @classmethod
    def of(cls, content: bytes, media_type: str) -> _Body:
        return cls(content, media_type, f'"{hashlib.sha256(content).hexdigest()[:32]}"')

    def answer(self, request: Request, cache_control: str, **headers: str) -> Response:
        fields = {"etag": self.etag, "cache-control": cache_control, **headers}
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=fields)
        return Response(self.content, media_type=self.media_type, headers=fields)


def swagger_ui_directory() -> Path:
    """Where the installed package keeps Swagger UI's files, found without importing it (its
    module imports a template engine this service does not use)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


@functools.cache
def _document() -> _Body:
    from allotment.api.openapi.document import document_bytes

    return _Body.of(document_bytes(), "application/json")


@functools.cache
def _asset(name: str) -> _Body:
    if name == _INIT:
        return _Body.of(_INIT_SCRIPT, "text/javascript; charset=utf-8")
    return _Body.of((swagger_ui_directory() / name).read_bytes(), _PACKAGED[name])


_PAGE_BODY = _Body.of(_PAGE, "text/html; charset=utf-8")


async def openapi_json(request: Request) -> Response:
    return _document().answer(request, _REVALIDATE)


async def docs_page(request: Request) -> Response:
    return _PAGE_BODY.answer(request, _REVALIDATE, **{"content-security-policy": _CSP})


async def docs_asset(request: Request) -> Response:
    name: str = request.path_params["asset"]
    if name not in ASSETS:
        return raw_json_response(error_body("not_found", "No such route."), 404)
    return _asset(name).answer(request, _ASSET_CACHE)


_ASSET = Param(
    "asset",
    "A file of the documentation page.",
    {"type": "string", "enum": list(ASSETS)},
    location="path",
)

_NOT_MODIFIED = ("Not modified: the `ETag` sent in `If-None-Match` is current.", None)

routes = [
    DescribedRoute(
        "/openapi.json",
        openapi_json,
        "GET",
        Doc(
            "This document",
            None,
            dict,
            description="OpenAPI 3.1, generated from the definitions the service "
            "decodes and encodes with.",
            extra_answers={304: _NOT_MODIFIED},
        ),
    ),
    DescribedRoute(
        "/docs",
        docs_page,
        "GET",
        Doc(
            "Interactive documentation of this document",
            None,
            str,
            media_types=("text/html",),
            extra_answers={304: _NOT_MODIFIED},
            description="Everything the page loads is served by this process.",
        ),
    ),
    DescribedRoute(
        "/docs/{asset}",
        docs_asset,
        "GET",
        Doc(
            "A file of the documentation page",
            None,
            bytes,
            params=(_ASSET,),
            errors=(404,),
            media_types=tuple(dict.fromkeys(_PACKAGED.values())),
            extra_answers={304: _NOT_MODIFIED},
            description="Cached for a day; revalidate with `If-None-Match`.",
        ),
    ),
]
