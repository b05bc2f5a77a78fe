"""Browser libraries from the npm registry are served under /vendor/, from node_modules only
(installed by scripts/bootstrap.sh), and nothing outside each package's served folder."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cti.web.pages import DEFAULT_VENDOR_DIR, VENDOR_PACKAGES, add_vendor


async def _client() -> TestClient[web.Request, web.Application]:
    app = web.Application()
    add_vendor(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


def test_every_vendor_package_is_installed() -> None:
    for package, folder in VENDOR_PACKAGES.items():
        assert (DEFAULT_VENDOR_DIR / package / folder).is_dir(), package


async def test_libraries_are_served_with_page_headers() -> None:
    client = await _client()
    try:
        for path in (
            "/vendor/sip.js/index.js",
            "/vendor/echarts/echarts.min.js",
            "/vendor/swagger-ui-dist/swagger-ui-bundle.js",
        ):
            resp = await client.get(path)
            assert resp.status == 200, path
            assert "javascript" in resp.headers["Content-Type"]
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
    finally:
        await client.close()


async def test_nothing_outside_the_served_folders() -> None:
    client = await _client()
    try:
        for path in (
            "/vendor/sip.js/../package.json",
            "/vendor/sip.js/%2e%2e/package.json",
            "/vendor/echarts/../package.json",
            "/vendor/zrender/index.js",
            "/vendor/",
        ):
            resp = await client.get(path)
            assert resp.status in (403, 404), path
    finally:
        await client.close()
