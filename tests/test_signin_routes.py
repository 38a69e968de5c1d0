"""The middleware around Streamlit's sign-in routes: a failed callback is marked, logout ends both."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from chatbot.signin_routes import SignInRoutes

SIGNED_IN = b'_streamlit_user="2|1:0|10:17|...signed..."; HttpOnly; Max-Age=2592000; Path=/; SameSite=lax'
CLEARED = b'_streamlit_user=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; SameSite=lax'


def answer(path: str, query: bytes = b"", cookies: tuple[bytes, ...] = ()) -> dict[bytes, list[bytes]]:
    """The headers the browser gets when Streamlit answers ``path`` with a redirect home."""

    async def streamlit(scope, receive, send):
        headers = [(b"location", b"/"), *((b"set-cookie", cookie) for cookie in cookies)]
        await send({"type": "http.response.start", "status": 302, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request"}

    scope = {"type": "http", "path": path, "query_string": query}
    middleware = SignInRoutes(streamlit, password_cookie="chatbot_auth")
    # A thread of its own: an earlier test of the run may leave an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, middleware(scope, receive, send)).result()
    headers: dict[bytes, list[bytes]] = {}
    for name, value in sent[0]["headers"]:
        headers.setdefault(name, []).append(value)
    return headers


def test_a_successful_callback_goes_home_unmarked():
    assert answer("/oauth2callback", b"code=c&state=s", (SIGNED_IN,))[b"location"] == [b"/"]


@pytest.mark.parametrize("cookies", [(), (CLEARED,)])
def test_a_callback_that_signs_nobody_in_is_marked_failed(cookies):
    assert answer("/oauth2callback", b"code=forged&state=forged", cookies)[b"location"] == [b"/?sso=failed"]


def test_an_error_from_the_provider_is_marked_denied():
    assert answer("/oauth2callback", b"error=access_denied&state=s")[b"location"] == [b"/?sso=denied"]


def test_the_return_from_the_providers_logout_is_not_a_failure():
    assert answer("/oauth2callback")[b"location"] == [b"/"]


def test_logout_deletes_the_password_cookie_too():
    cookies = answer("/auth/logout", cookies=(CLEARED,))[b"set-cookie"]
    assert cookies == [CLEARED, b"chatbot_auth=; Max-Age=0; Path=/; SameSite=Strict"]


def test_other_routes_are_left_alone():
    assert answer("/_stcore/health") == {b"location": [b"/"]}
