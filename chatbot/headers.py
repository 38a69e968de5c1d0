"""Security headers on every HTTP answer: a Content-Security-Policy that lets the page load and
connect to nothing but the app itself, whatever text reaches it.

The sanitizer (chatbot.render) already keeps images and links from other hosts out of the page;
this is the second wall: if some text ever slipped through, the browser still would not fetch a
remote image, script or stylesheet, connect elsewhere, or let another site frame the app.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import re
from collections.abc import Iterable
from pathlib import Path

# Pages the app serves that carry inline scripts: Streamlit's own (window.prerenderReady). Each
# script is allowed by its hash, read from the installed package, so an upgrade that changes one
# changes the policy with it.
PAGES_WITH_INLINE_SCRIPTS = (("streamlit", "static/index.html"),)
# The app's own inline scripts (st.html with JavaScript), allowed by their hashes too: closing the
# sidebar on a phone, writing or deleting the login cookie (chatbot.auth), and rerunning after a
# reconnect (ui.rerun_on_reconnect).
ASSETS = Path(__file__).resolve().parent.parent / "assets"
APP_SCRIPTS = (ASSETS / "close-sidebar.js", ASSETS / "login-cookie.js", ASSETS / "rerun-on-reconnect.js")
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL)


@functools.cache
def inline_script_hashes() -> tuple[str, ...]:
    hashes = []
    for package, page in PAGES_WITH_INLINE_SCRIPTS:
        spec = importlib.util.find_spec(package)
        path = Path(spec.origin).parent / page if spec and spec.origin else None
        if path is None or not path.is_file():
            continue
        for script in INLINE_SCRIPT.findall(path.read_text(encoding="utf-8")):
            hashes.append(_hash(script))
    return (*hashes, *(_hash(path.read_text(encoding="utf-8")) for path in APP_SCRIPTS))


def _hash(script: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"


def content_security_policy(image_hosts: Iterable[str] = ()) -> str:
    """The policy: the app's own origin only (plus https images from ``image_hosts``)."""
    images = " ".join(["'self'", "data:", "blob:", *(f"https://{host}" for host in sorted(image_hosts))])
    return "; ".join([
        "default-src 'self'",
        " ".join(["script-src 'self'", *inline_script_hashes(), "'wasm-unsafe-eval'"]),
        "style-src 'self' 'unsafe-inline'",  # Streamlit's CSS-in-JS writes <style> elements
        f"img-src {images}",
        "font-src 'self' data:",
        "media-src 'self' data: blob:",
        "connect-src 'self'",  # the app's own WebSocket and uploads; no third party
        "frame-src 'self'",  # components (the login cookie) are served by the app itself
        "worker-src 'self' blob:",
        "frame-ancestors 'self'",  # the app frames its own components; no other site may
        "form-action 'self'",
        "base-uri 'self'",
        "object-src 'none'",
    ])


class SecurityHeaders:
    """ASGI middleware adding the policy and its companions to every HTTP response."""

    def __init__(self, app, image_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", content_security_policy(image_hosts).encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"SAMEORIGIN"),
        ]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
