"""The interactive API page: Swagger UI over ``/openapi.json``, at ``/docs``.

Its script and styles come from the ``swagger-ui-bundle-v2`` package (a
dependency with a stated version, see pyproject.toml) and runyard serves them
itself: nothing is fetched from a CDN, so the page works offline, behind a
firewall, and shows the Swagger UI that was installed. The asset files are
served like ``/static/``: outside the document, which describes the API.
"""

from __future__ import annotations

from quart import Blueprint, Response, send_from_directory
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from ..errors import NotFound
from .routes import HTML, Routes

docs = Blueprint("docs", __name__)
route = Routes(docs)

# The files of the bundle the page loads; the rest of the package is not served.
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})
# Relative links: the page works under a proxy's path prefix too.
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>runyard API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/runyard.js"></script>
</body>
</html>
"""
# Kept out of the page so that a Content-Security-Policy without inline scripts allows it.
START = 'window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui"});\n'


@route(
    "/docs", "GET", summary="This API, interactive (Swagger UI)", answers={200: HTML}, stored=False
)
async def page() -> Response:
    return Response(PAGE, content_type="text/html; charset=utf-8")


async def asset(name: str) -> Response:
    if name == "runyard.js":
        return Response(START, content_type="text/javascript; charset=utf-8")
    if name not in ASSETS:
        raise NotFound("not found")
    return await send_from_directory(swagger_ui_path, name)


docs.add_url_rule("/docs/<name>", view_func=asset, methods=["GET"])
