"""The chat page in a real browser: logging in and out, asking the notes engine, managing chats."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import (
    PASSWORDS,
    PAYLOAD_WORD,
    QUESTION_BOX,
    AppServer,
    ask,
    assert_inert,
    logged_in,
    login,
    messages,
    new_chat,
    new_context,
    screenshot,
    settle,
    sidebar,
    start_app,
    submit_login,
    wait_for_login_cookie,
    warm_up,
)

pytestmark = pytest.mark.e2e

OPEN_CONVERSATION = re.compile(r"[?&]c=(\d+)")
PAYLOAD_QUESTION = f"What do my notes say about the {PAYLOAD_WORD} incident? <b>bold</b> [q](javascript:window.__pwned=1)"


def conversation_id(page: Page) -> int:
    match = OPEN_CONVERSATION.search(page.url)
    assert match, f"no ?c=<id> in {page.url}"
    return int(match.group(1))


def manage(page: Page, conversation: int):
    """The sidebar's "Manage this chat" expander of a conversation, opened."""
    expander = sidebar(page).get_by_test_id("stExpander").filter(has=page.locator(f".st-key-chat_title_{conversation}"))
    if not expander.locator("details[open]").count():
        expander.get_by_text("Manage this chat").click()
    return expander


def test_wrong_password_is_refused_and_the_right_one_logs_in_until_logout(page: Page, app_server: AppServer):
    page.goto(app_server.base_url)
    submit_login(page, "alice", "not-alices-password")
    expect(page.get_by_text("Username or password is incorrect.")).to_be_visible()
    expect(page.get_by_placeholder(QUESTION_BOX)).to_have_count(0)

    login(page, "alice")
    expect(page.get_by_placeholder(QUESTION_BOX)).to_be_visible()
    expect(page.get_by_text("Username or password is incorrect.")).to_have_count(0)

    wait_for_login_cookie(page)
    page.reload()
    expect(sidebar(page).get_by_text("Signed in as alice")).to_be_visible()
    expect(page.get_by_label("Password", exact=True)).to_have_count(0)

    sidebar(page).get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Login")).to_be_visible()
    expect(page.get_by_placeholder(QUESTION_BOX)).to_have_count(0)
    page.wait_for_function("() => !document.cookie.includes('chatbot_auth=')")
    page.reload()
    expect(page.get_by_role("button", name="Login")).to_be_visible()
    expect(sidebar(page).get_by_text("Signed in as")).to_have_count(0)


def test_question_is_answered_and_the_chat_can_be_switched_renamed_and_deleted(page: Page, app_server: AppServer):
    login(page, "alice", base_url=app_server.base_url)
    first = "What did the churn meeting decide about paused accounts?"
    answer = ask(page, first)
    expect(answer).to_contain_text("Here is what your notes say.")
    expect(answer).to_contain_text("meeting-2024-03-12-churn-dashboard.md")
    expect(answer).to_contain_text("Paused accounts are not churned")
    expect(answer.get_by_test_id("stCaptionContainer")).to_contain_text("notes")
    expect(page).to_have_url(OPEN_CONVERSATION)
    first_id = conversation_id(page)
    expect(sidebar(page).get_by_role("button", name=first, exact=True)).to_be_visible()

    new_chat(page)
    expect(page).not_to_have_url(OPEN_CONVERSATION)
    second = "How do I find sessions idle in transaction?"
    expect(ask(page, second)).to_contain_text("pg_stat_activity")
    assert conversation_id(page) != first_id
    expect(sidebar(page).get_by_role("button", name=second, exact=True)).to_be_visible()
    screenshot(page, "chat", top=page.get_by_role("heading", name=second))

    sidebar(page).get_by_role("button", name=first, exact=True).click()
    expect(messages(page)).to_have_count(2)
    expect(messages(page).first).to_contain_text(first)
    assert conversation_id(page) == first_id

    renamed = "Churn: paused accounts"
    expander = manage(page, first_id)
    expander.get_by_label("Title").fill(renamed)
    expander.get_by_role("button", name="Rename").click()
    expect(sidebar(page).get_by_role("button", name=renamed, exact=True)).to_be_visible()
    expect(sidebar(page).get_by_role("button", name=first, exact=True)).to_have_count(0)

    expander = manage(page, first_id)
    expander.get_by_role("button", name="Delete", exact=True).click()
    expander.get_by_role("button", name="Yes, delete it").click()
    expect(sidebar(page).get_by_role("button", name=renamed, exact=True)).to_have_count(0)
    expect(messages(page)).to_have_count(0)
    expect(page).not_to_have_url(OPEN_CONVERSATION)
    expect(sidebar(page).get_by_role("button", name=second, exact=True)).to_be_visible()


@pytest.fixture(scope="module")
def payload_answer(browser: Browser, app_server: AppServer) -> Iterator[Page]:
    """Alice's page once the notes engine has quoted the payload note, as a model could answer."""
    with logged_in(browser, app_server, "alice") as page:
        new_chat(page)
        ask(page, PAYLOAD_QUESTION)
        yield page


def test_model_answer_with_script_and_html_payloads_renders_inert(payload_answer: Page):
    """Issue #5: while streaming and once saved, the payloads are text and nothing runs."""
    answer = messages(payload_answer).nth(1)
    expect(answer).to_contain_text(f"{PAYLOAD_WORD}-payloads.md")
    expect(answer).to_contain_text('<script>window.__pwned = "script"</script>')  # shown as text
    expect(answer).to_contain_text("<iframe src=")
    expect(answer).to_contain_text("click me")  # the javascript: link's text, without the link
    assert_inert(payload_answer)


def test_saved_answer_shows_no_image_with_an_unsafe_scheme(payload_answer: Page):
    """render.py promises no image or link with another scheme than http(s)/mailto, but it
    checks inline ``![x](url)`` only: ``![x][ref]`` with ``[ref]: data:text/html;…`` stays,
    and the saved answer shows <img src="data:text/html;…">. (Reference-style links to
    javascript: pass too; Streamlit's renderer turns their href into "#".)"""
    expect(messages(payload_answer).locator('img[src^="data:" i]')).to_have_count(0, timeout=2_000)


def test_first_login_after_a_restart_is_not_dropped(browser: Browser, tmp_path):
    """The first session after the server starts must log in on the first try.

    The form used to come back empty, with no error: the login cookie component had one
    widget id in the session's first run, before any run had called st.navigation, and
    another in the login run, and the rerun its re-mounting triggered dropped the form
    submission. The first run now draws nothing (app.first_run) and the component is gone.
    """
    server = start_app(tmp_path / "app", users=("alice",))
    context = new_context(browser)
    try:
        page = context.new_page()
        page.goto(server.base_url)
        expect(page.get_by_role("button", name="Login")).to_be_visible()
        submit_login(page, "alice", PASSWORDS["alice"])
        signed_in = sidebar(page).get_by_text("Signed in as alice")
        settle(page)  # both outcomes end idle: logged in, or the login form back, empty
        expect(signed_in.or_(page.get_by_role("button", name="Login"))).to_be_visible()
        expect(signed_in).to_be_visible(timeout=1_000)
    finally:
        context.close()
        server.stop()


def test_a_dark_preference_on_a_phone_gives_a_dark_page_that_fits_the_screen(browser: Browser, tmp_path):
    """Issue #14: the page follows the browser's dark preference, and a long unbroken word
    wraps inside its bubble at 390 px instead of widening the page. (An app of its own: the
    shared one's users are counted by other tests.)"""
    server = start_app(tmp_path / "app", users=("alice",))
    warm_up(browser, server)
    context = browser.new_context(color_scheme="dark", viewport={"width": 390, "height": 844})
    context.set_default_timeout(20_000)
    try:
        page = context.new_page()
        refused = []
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(server.base_url)
        expect(page.get_by_test_id("stHeaderLogo")).to_be_visible()  # the app's name on the login page
        login(page, "alice")  # the sidebar is closed at this width
        ask(page, "What about " + "x" * 300 + " vacuum?")
        red, green, blue = map(int, re.findall(r"\d+", page.evaluate(
            "() => getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor"))[:3])
        assert (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255 < 0.3, "the page is not dark"
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390

        for pick in (lambda: sidebar(page).get_by_role("button", name="New chat"),
                     lambda: sidebar(page).get_by_role("button", name=re.compile("^What about"))):
            page.get_by_test_id("stExpandSidebarButton").click()
            expect(sidebar(page)).to_be_in_viewport()
            pick().click()
            expect(sidebar(page)).not_to_be_in_viewport()  # closed after the pick, as on st.navigation
        expect(messages(page)).to_have_count(2)  # the picked conversation is open
        assert refused == []
    finally:
        context.close()
        server.stop()
