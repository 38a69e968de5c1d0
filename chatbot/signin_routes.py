"""ASGI middleware around Streamlit's single sign-on routes: a failed callback says so, and
signing out ends the password login too.

Streamlit's /oauth2callback answers every failure (a forged or replayed state, a code the
provider refuses, the provider's own error) with a silent redirect to the app, which would
show the login page again as if nothing had happened. This middleware sees the callback's
answer: when it is a redirect that sets no identity cookie, the redirect gains ``?sso=failed``
(or ``?sso=denied`` when the provider sent an error), and the login page says what happened.

/auth/logout (st.logout) also deletes streamlit-authenticator's login cookie, so one "Log out"
ends both kinds of sign-in whatever the browser holds.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qs

logger = logging.getLogger(__name__)

CALLBACK, LOGOUT = "/oauth2callback", "/auth/logout"
IDENTITY_COOKIE = b"_streamlit_user="  # Streamlit's signed st.user cookie
FAILED, DENIED = "failed", "denied"  # the values of ?sso= the login page explains


class SignInRoutes:
    """Wraps the app: watches the answers of /oauth2callback and /auth/logout."""

    def __init__(self, app, password_cookie: str = "chatbot_auth") -> None:
        self.app = app
        self.delete_password_cookie = (
            b"set-cookie", f"{password_cookie}=; Max-Age=0; Path=/; SameSite=Strict".encode())

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.endswith(CALLBACK):
            await self.app(scope, receive, self._callback_send(scope, send))
        elif path.endswith(LOGOUT):
            await self.app(scope, receive, self._logout_send(send))
        else:
            await self.app(scope, receive, send)

    def _callback_send(self, scope, send):
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        attempt = any(key in query for key in ("code", "state", "error"))  # not the return from a logout
        outcome = DENIED if "error" in query else FAILED

        async def watched(message) -> None:
            if attempt and message["type"] == "http.response.start" and not _signs_in(message):
                logger.warning("single sign-on callback refused (%s): %s", outcome,
                               (query.get("error") or ["bad state or code"])[0][:100])
                message = {**message, "headers": [
                    (name, _marked(value, outcome) if name.lower() == b"location" else value)
                    for name, value in message.get("headers", [])]}
            await send(message)

        return watched

    def _logout_send(self, send):
        async def watched(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.delete_password_cookie]}
            await send(message)

        return watched


def _signs_in(message) -> bool:
    """Whether the answer stores an identity (a failure deletes the cookie or sets none)."""
    for name, value in message.get("headers", []):
        if name.lower() == b"set-cookie" and value.startswith(IDENTITY_COOKIE):
            cookie = value[len(IDENTITY_COOKIE):].lower()
            if not cookie.startswith((b'""', b";")) and b"max-age=0" not in cookie:
                return True
    return False


def _marked(location: bytes, outcome: str) -> bytes:
    separator = b"&" if b"?" in location else b"?"
    return location + separator + f"sso={outcome}".encode()
