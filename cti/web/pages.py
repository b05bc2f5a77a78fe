"""Static browser pages (agent desktop, wallboard, recordings) served by the daemon.

Pages are plain files written in this repository; they carry no secrets and are public,
every byte of data they show comes from ``/api/`` and ``/ws`` with the user's token.
Every page response gets the same defensive headers: a strict Content-Security-Policy
(no inline script, no third-party origin), ``nosniff`` and no framing, so a caller ID
that somehow reached the DOM as markup still could not run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

__all__ = [
    "PAGE_HEADERS",
    "STATIC_ROOT",
    "VENDOR_PACKAGES",
    "add_pages",
    "add_vendor",
    "security_headers",
]

log = logging.getLogger(__name__)

STATIC_ROOT = Path(__file__).parent / "static"
#: Where ``npm ci`` (scripts/bootstrap.sh) puts the browser libraries of package.json.
DEFAULT_VENDOR_DIR = Path(__file__).resolve().parents[2] / "node_modules"
#: The npm packages pages may load, and the one folder of each that is served:
#: ``/vendor/<package>/<file>`` is ``node_modules/<package>/<folder>/<file>``.
VENDOR_PACKAGES: dict[str, str] = {
    "sip.js": "lib",
    "echarts": "dist",
    "swagger-ui-dist": "",
}

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob:; connect-src 'self' ws: wss:; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: page headers on everything that is not the API."""
    if not request.path.startswith("/api/"):
        for key, value in PAGE_HEADERS.items():
            response.headers.setdefault(key, value)


def add_pages(app: web.Application, prefix: str, directory: Path) -> None:
    """Serve ``directory`` under ``prefix`` (e.g. ``/desktop``); ``prefix/`` is index.html.

    aiohttp's static handler resolves every path inside ``directory`` and refuses
    anything that leaves it (``..``, encoded forms, symlinks out).
    """
    prefix = prefix.rstrip("/")
    index = directory / "index.html"

    async def _index(_: web.Request) -> web.FileResponse:
        return web.FileResponse(index)

    async def _slash(_: web.Request) -> web.Response:
        raise web.HTTPFound(prefix + "/")

    if index.is_file():
        app.router.add_get(prefix + "/", _index)
        app.router.add_get(prefix, _slash)
    app.router.add_static(prefix + "/", directory, follow_symlinks=False, show_index=False)
    if security_headers not in app.on_response_prepare:
        app.on_response_prepare.append(security_headers)


def add_vendor(app: web.Application, vendor_dir: Path | None = None) -> None:
    """Serve the allowed folder of each package in :data:`VENDOR_PACKAGES` under
    ``/vendor/<package>/``; a package that is not installed is logged, not fatal (pages
    that need it say so)."""
    root = vendor_dir or DEFAULT_VENDOR_DIR
    for package, folder in VENDOR_PACKAGES.items():
        directory = root / package / folder if folder else root / package
        if not directory.is_dir():
            log.warning(
                "browser library %s not installed in %s (run scripts/bootstrap.sh)", package, root
            )
            continue
        app.router.add_static(
            f"/vendor/{package}/", directory, follow_symlinks=False, show_index=False
        )
    if security_headers not in app.on_response_prepare:
        app.on_response_prepare.append(security_headers)
