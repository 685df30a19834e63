"""``/``: the dashboard, a static page shipped inside this package that draws what the JSON
endpoints return. It holds no data itself, so it is served without the token even when reads are
protected (the page then asks for the token to read)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

DASHBOARD_PACKAGE = ("cncwear_api", "dashboard")
ASSETS_PATH = "/dashboard"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""Everything from this server only: the browser itself refuses any other host."""

router = APIRouter(include_in_schema=False)


def _index() -> Path:
    return Path(str(files(DASHBOARD_PACKAGE[0]).joinpath(DASHBOARD_PACKAGE[1], "index.html")))


@router.get("/")
async def dashboard() -> FileResponse:
    return FileResponse(
        _index(),
        media_type="text/html",
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
    )


def assets() -> StaticFiles:
    """The page's scripts, styles and vendored libraries, served from the package."""
    return StaticFiles(packages=[DASHBOARD_PACKAGE])
