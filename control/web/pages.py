"""The web console's pages, served by the API's own server (no other web server).

    GET /m/{meeting_id}      the join page: name and password (or a registration's join
                             token, or the registration form), the recording notice, then the
                             meeting plays over WHEP; a panelist or host can publish over WHIP
    GET /host/{meeting_id}   the host console (asks for the host key)
    GET /admin               the operator view (asks for the operator token)
    GET /assets/{name}       their scripts and style sheet (control/web/assets/)

A page is a static file: the meeting id is read by its script from the address, so nothing a
request holds is ever written into a page. Every action a page takes is a call of the public
API (/v1, as any client makes it) with the credential in the Authorization header; the pages
keep credentials in the tab's sessionStorage, never in an address, a cookie or a log. With no
cookies there is nothing a cross-site request could ride on (no CSRF), and every page carries a
Content-Security-Policy that allows scripts, styles and connections of its own origin only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from control.errors import NotFound

router = APIRouter(include_in_schema=False)

ASSETS = Path(__file__).parent / "assets"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# Scripts, styles and fetch() of this origin only; no inline script, no plugin, no framing.
# media-src: the players' MediaStreams (srcObject) and the CSV downloads' blob: links.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self'",
        "worker-src 'self'",  # the proof of work's solver (assets/pow.js)
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a page's address never leaves with a request
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
    "Cache-Control": "no-cache",  # revalidated, so an upgraded relay's pages show at once
}


# What may be served: the files shipped, read once (a request names one of these or gets 404).
_FILES = {
    p.name: (p.read_bytes(), _TYPES[p.suffix])
    for p in sorted(ASSETS.iterdir())
    if p.is_file() and p.suffix in _TYPES
}


def _page(name: str) -> Response:
    body, media_type = _FILES[name]
    return Response(body, media_type=media_type, headers=HEADERS)


@router.get("/m/{meeting_id}")
async def join_page(meeting_id: str) -> Response:
    return _page("join.html")


@router.get("/host/{meeting_id}")
async def host_page(meeting_id: str) -> Response:
    return _page("host.html")


@router.get("/admin")
async def operator_page() -> Response:
    return _page("admin.html")


@router.get("/assets/{name}")
async def asset(name: str) -> Response:
    if name not in _FILES:
        raise NotFound("no such file")
    return _page(name)
