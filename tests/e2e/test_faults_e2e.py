"""Issue #5 in Chromium: Langflow down. The user sees what failed, keeps the question, and Retry works once it is back."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import (
    AppServer,
    Listener,
    aimed,
    ask,
    assert_inert,
    assert_no_traceback,
    foreign,
    free_port,
    logged_in,
    messages,
    settle,
    start_app,
    warm_up,
)
from tests.replay_server import FLOW_ID, ReplayServer, echo_flow, failed_run, stream_reply
from tests.test_render import payloads

pytestmark = pytest.mark.e2e

QUESTION_BOX = "Ask a question"  # the placeholder when a Langflow flow answers


@pytest.fixture(scope="module")
def langflow_port() -> int:
    """Where the app expects Langflow; nothing listens there until a test starts a server."""
    return free_port()


@pytest.fixture(scope="module")
def unreachable_app(langflow_port: int, tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[AppServer]:
    settings = {
        "LANGFLOW_URL": f"http://127.0.0.1:{langflow_port}",
        "LANGFLOW_FLOW_ID": FLOW_ID,
        "LANGFLOW_API_KEY": "sk-e2e-secret-key",
    }
    server = start_app(tmp_path_factory.mktemp("unreachable-app"), extra_env=settings, users=("alice", "root"))
    warm_up(browser, server)
    yield server
    server.stop()


@pytest.fixture
def page(browser: Browser, unreachable_app: AppServer) -> Iterator[Page]:
    """An admin's page: admins see the technical cause of a failure (analysts what to do)."""
    with logged_in(browser, unreachable_app, "root") as page:
        yield page


def test_langflow_unreachable_keeps_the_question_across_a_reload_and_retry_answers_once_it_is_back(
    page: Page, unreachable_app: AppServer, langflow_port: int
):
    question = "Which accounts churned in March?"
    answer = ask(page, question, placeholder=QUESTION_BOX)
    expect(answer.get_by_test_id("stAlert")).to_contain_text(
        f"No answer: Cannot reach Langflow at http://127.0.0.1:{langflow_port}: connection refused")
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    assert_no_traceback(page)
    assert "sk-e2e-secret-key" not in page.content()

    page.reload()
    expect(messages(page)).to_have_count(2)
    expect(messages(page).first.get_by_test_id("stMarkdownContainer").first).to_have_text(question)
    expect(messages(page).nth(1).get_by_test_id("stAlert")).to_contain_text("Cannot reach Langflow")
    assert_no_traceback(page)

    settle(page)  # the reload logs in again by cookie, and that rerun can swallow a click
    with ReplayServer(default=functools.partial(echo_flow, tokens=True), port=langflow_port):
        page.get_by_role("button", name="Retry").click()
        expect(messages(page).last.get_by_test_id("stFeedback")).to_be_visible()
        expect(messages(page)).to_have_count(2)  # the failed answer is replaced (and kept as version 1)
        expect(messages(page).last).to_contain_text(question)
        expect(messages(page).last.get_by_text("2 / 2")).to_be_visible()
    expect(messages(page).last.get_by_test_id("stAlert")).to_have_count(0)
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    assert "Traceback" not in unreachable_app.log_path.read_text()


def test_an_analyst_sees_what_to_do_when_langflow_is_unreachable(browser: Browser, unreachable_app: AppServer):
    with logged_in(browser, unreachable_app, "alice") as page:
        answer = ask(page, "Which accounts churned in April?", placeholder=QUESTION_BOX)
        expect(answer.get_by_test_id("stAlert")).to_contain_text("your question is saved. Press Retry in a minute")
        assert "LANGFLOW_URL" not in answer.inner_text() and "127.0.0.1" not in answer.inner_text()
        expect(answer.get_by_test_id("stFeedback")).to_have_count(0)  # nothing to rate
        expect(page.get_by_role("button", name="Retry")).to_be_visible()


def test_an_error_text_full_of_payloads_is_shown_as_text_and_fetches_nothing(
    page: Page, unreachable_app: AppServer, langflow_port: int, listener: Listener
):
    """Issue #18: Langflow's error text went to st.error as Markdown, unsanitized: an image in it was fetched."""
    seen: list[str] = []
    page.context.on("request", lambda request: seen.append(request.url))
    reason = aimed(" ".join(payloads("markdown.txt") + payloads("xss.txt")).replace("\n", " "), listener)

    def failing(request):
        return stream_reply(failed_run(reason, session_id=request.body["session_id"]))

    with ReplayServer(default=failing, port=langflow_port):
        answer = ask(page, "Show me an error.", placeholder=QUESTION_BOX)
        expect(answer.get_by_test_id("stAlert")).to_contain_text("[a](javascript:prompt(document.cookie))")
    assert_inert(page)
    expect(answer.locator("img")).to_have_count(0)
    assert listener.hits == []
    assert foreign(seen, unreachable_app) == []
