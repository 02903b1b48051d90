"""GX Data Docs, styled, with no internet: the CDN assets GX's pages ask for, served from here.

GX 1.x renders pages that load Bootstrap, jQuery, bootstrap-table, Font Awesome and Vega from
five CDNs, and the GX logo from an S3 bucket with the data context id in the query string.
Behind a firewall (or under the plugin's content-security policy) they render as bare HTML.
``docs_assets/`` holds those exact files (npm releases of the versions GX names; licences beside
them; ``manifest.json`` maps each CDN URL to its file and pins every file's sha256). A Data
Docs page is served with each known CDN URL rewritten to the plugin's copy, the GX logo and
favicon to GX's own images, and any other external ``<script>``/``<link>`` tag removed, so the
browser never tries to leave the host.

The pages run sandboxed (an opaque origin: see ``DOCS_CSP`` in :mod:`fnd_plugin.quality`), so
the browser sends no Airflow cookie with what they load: these assets are served by a second,
public app (:func:`create_assets_app`, mounted at ``ASSETS_PREFIX``) that holds nothing but the
libraries and GX's images — code and pictures that ship with the product, no data.

Left out on purpose: ``@forevolve/bootstrap-dark`` (880 KB, only a dark variant; pages render
light).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from fnd_plugin.files import NotServable, media_type

ASSETS = Path(__file__).with_name("docs_assets")
_GX_IMAGE = re.compile(
    r"https://great-expectations-web-assets\.s3\.us-east-2\.amazonaws\.com/([A-Za-z0-9_.-]+)"
    r"(\?[^\"'\s>]*)?|(?<=[\"'])(?:\.\./)*static/images/([A-Za-z0-9_.-]+)"
)
_IMAGE_NAME = re.compile(r"^[A-Za-z0-9_-]+\.(png|svg|ico|gif)$")
_EXTERNAL_TAG = re.compile(
    r"<script\b[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>|<link\b[^>]*\bhref=[\"']https?://[^>]*>",
    re.IGNORECASE,
)


@lru_cache(maxsize=1)
def manifest() -> dict[str, Any]:
    """``{"urls": {CDN URL: file}, "files": {file: sha256}}`` of the vendored assets."""
    return json.loads((ASSETS / "manifest.json").read_text(encoding="utf-8"))


def asset_file(relative: str) -> Path:
    """A vendored asset by its path in the manifest; anything else is not servable."""
    if relative not in manifest()["files"]:
        raise NotServable(f"no Data Docs asset {relative!r}")
    return ASSETS / relative


def gx_image(name: str) -> Path:
    """One of the images GX ships (logo, favicon), from the installed package only."""
    from great_expectations.render.view import view

    folder = Path(view.__file__).with_name("static") / "images"
    if not _IMAGE_NAME.match(name) or not (folder / name).is_file():
        raise NotServable(f"no GX image {name!r}")
    return folder / name


def offline_page(html: str, *, assets_url: str) -> str:
    """A Data Docs page that loads everything from the public assets app at ``assets_url``."""
    for cdn, relative in manifest()["urls"].items():
        html = html.replace(f'"{cdn}"', f'"{assets_url}/lib/{relative}"')
    html = _GX_IMAGE.sub(lambda m: f"{assets_url}/gx/images/{m.group(1) or m.group(3)}", html)
    return _EXTERNAL_TAG.sub("", html)


def create_assets_app() -> Any:
    """The public app of the vendored libraries and GX's images (no auth: nothing private)."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse

    app = FastAPI(title="fnd Data Docs assets", openapi_url=None, docs_url=None, redoc_url=None)
    # The sandboxed pages have an opaque origin: their font loads are CORS requests.
    headers = {"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=86400",
               "X-Content-Type-Options": "nosniff"}  # fmt: skip

    def serve(find, name: str) -> FileResponse:
        try:
            target = find(name)
        except NotServable as exc:
            raise HTTPException(404, str(exc)) from exc
        return FileResponse(target, media_type=media_type(target), headers=headers)

    @app.get("/lib/{path:path}")
    def library(path: str) -> FileResponse:
        """A vendored library file (Bootstrap, jQuery...), by its manifest path only."""
        return serve(asset_file, path)

    @app.get("/gx/images/{name}")
    def image(name: str) -> FileResponse:
        """GX's logo or favicon."""
        return serve(gx_image, name)

    return app
