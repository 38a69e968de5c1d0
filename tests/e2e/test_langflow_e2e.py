"""The chat page answering with a real Langflow 1.13 flow whose model streams slowly (issue #4's fixture)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import (
    PAYLOAD_NOTE,
    AppServer,
    ask,
    assert_inert,
    assert_no_traceback,
    logged_in,
    messages,
    open_chat,
    settle,
    start_app,
    unsafe_nodes,
    warm_up,
)

pytestmark = pytest.mark.e2e

QUESTION_BOX = "Ask a question"  # the placeholder when a Langflow flow answers
WORDS = [f"word{n:02d}" for n in range(1, 31)]
TOKEN_DELAY = 0.12  # seconds per word: the whole answer takes about 4 s
# An inline image (which the saved answer turns into its text), then words that keep it on
# screen while they stream.
STREAMED_IMAGE = "An image: ![x](data:text/html;base64,PHNjcmlwdD4=) " + " ".join(f"then{n}" for n in range(40))


@pytest.fixture(scope="module")
def langflow_app(langflow, tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[AppServer]:
    """A second app, answering with the model flow (OpenAI stub behind Langflow); users alice and bob
    (bob only for the first question a user ever asks)."""
    settings = {
        "LANGFLOW_URL": langflow.base_url,
        "LANGFLOW_FLOW_ID": langflow.model_flow,
        "LANGFLOW_API_KEY": langflow.api_key,
    }
    server = start_app(tmp_path_factory.mktemp("langflow-app"), extra_env=settings, users=("alice", "bob"))
    warm_up(browser, server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alice(browser: Browser, langflow_app: AppServer) -> Iterator[Page]:
    with logged_in(browser, langflow_app, "alice") as page:
        yield page


@pytest.fixture
def page(alice: Page) -> Page:
    open_chat(alice)
    return alice


def test_answer_appears_progressively(page: Page, langflow_app: AppServer, model_stub):
    model_stub.configure(answer=" ".join(WORDS), token_delay=TOKEN_DELAY)
    box = page.get_by_placeholder(QUESTION_BOX)
    box.fill("Count to thirty, slowly.")
    box.press("Enter")

    answer = messages(page).nth(1)
    expect(answer).to_contain_text(WORDS[0], timeout=60_000)  # the flow's first run builds its graph
    first_seen = time.monotonic()
    assert WORDS[-1] not in answer.inner_text(), "the whole answer arrived at once"
    expect(answer).to_contain_text(WORDS[len(WORDS) // 2])
    assert WORDS[-1] not in answer.inner_text()
    expect(answer).to_contain_text(WORDS[-1])
    streamed_for = time.monotonic() - first_seen
    assert streamed_for > TOKEN_DELAY * len(WORDS) / 2, f"last word only {streamed_for:.1f} s after the first"

    expect(answer.get_by_test_id("stFeedback")).to_be_visible()  # saved
    expect(answer).to_contain_text(" ".join(WORDS))
    expect(answer.get_by_test_id("stCaptionContainer")).to_contain_text(langflow_app.env["LANGFLOW_FLOW_ID"])


def test_model_answer_with_payloads_runs_nothing_while_streaming(page: Page, langflow_app: AppServer, model_stub):
    """Issue #5 through the real Langflow path: the payloads stream in word by word."""
    model_stub.configure(answer=PAYLOAD_NOTE, token_delay=0.03)
    answer = ask(page, "Show me the incident notes.", placeholder=QUESTION_BOX)
    expect(answer).to_contain_text('<script>window.__pwned = "script"</script>')
    assert_inert(page)


def test_streamed_answer_shows_no_image_with_an_unsafe_scheme(page: Page, langflow_app: AppServer, model_stub):
    """While an answer streams, pages/chat.py shows escape_html(chunk) but not safe_markdown, so
    ``![x](data:text/html;…)`` is an <img src="data:text/html;…"> until the saved answer
    replaces it with the text "x". An image runs nothing, but render.py promises that no
    image or link with another scheme than http(s)/mailto is ever shown."""
    model_stub.configure(answer=STREAMED_IMAGE, token_delay=0.03)
    ask(page, "Show me the incident notes again.", placeholder=QUESTION_BOX)
    assert [seen for seen in unsafe_nodes(page) if seen.startswith("url ")] == []


def test_a_model_stream_cut_mid_answer_shows_an_error_and_the_question_survives_a_reload(
    page: Page, langflow_app: AppServer, model_stub
):
    """The model behind the real Langflow drops its connection after five words (no [DONE])."""
    model_stub.configure(answer=" ".join(WORDS), token_delay=0.05, cut_after=5)
    question = "Count to thirty, if the model lets you."
    answer = ask(page, question, placeholder=QUESTION_BOX)
    expect(answer.get_by_test_id("stAlert")).to_contain_text("peer closed connection")  # Langflow's own words
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    assert WORDS[-1] not in answer.inner_text()
    assert_no_traceback(page)

    page.reload()
    expect(messages(page)).to_have_count(2)
    expect(messages(page).first.get_by_test_id("stChatMessageContent")).to_have_text(question)
    expect(messages(page).nth(1).get_by_test_id("stAlert")).to_contain_text("No answer: ")
    assert_no_traceback(page)

    model_stub.configure(cut_after=None, token_delay=0.0)
    settle(page)  # the reload logs in again by cookie, and that rerun can swallow a click
    page.get_by_role("button", name="Retry").click()
    expect(messages(page)).to_have_count(3)
    expect(messages(page).last).to_contain_text(" ".join(WORDS))
    expect(messages(page).last.get_by_test_id("stFeedback")).to_be_visible()
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    assert "Traceback" not in langflow_app.log_path.read_text()


def stored_answers(server: AppServer) -> list[tuple[str, str]]:
    """(status, content) of every answer in the app's SQLite database, oldest first."""
    with sqlite3.connect(server.env["DATABASE_URL"].removeprefix("sqlite:///")) as db:
        return db.execute("SELECT status, content FROM messages WHERE role = 'assistant' ORDER BY id").fetchall()


@pytest.mark.parametrize("token_delay", [0.0, 0.05])
def test_the_first_question_after_login_is_answered_in_full(
    browser: Browser, langflow_app: AppServer, model_stub, token_delay
):
    """Issue #14: the first question of a new conversation was cut off after one token and saved
    as interrupted, because a rerun the user never asked for ended the stream."""
    model_stub.configure(answer=" ".join(WORDS), token_delay=token_delay)
    with logged_in(browser, langflow_app, "bob") as page:
        box = page.get_by_placeholder(QUESTION_BOX)
        box.fill("Count to thirty for me.")
        box.press("Enter")
        answer = messages(page).nth(1)
        expect(answer.get_by_test_id("stFeedback")).to_be_visible(timeout=60_000)
        expect(answer).to_contain_text(" ".join(WORDS))
        expect(answer.get_by_test_id("stAlert")).to_have_count(0)
        assert ("complete", " ".join(WORDS)) in stored_answers(langflow_app)

        page.reload()  # the saved answer is the whole one
        expect(messages(page).nth(1)).to_contain_text(WORDS[-1])
        expect(messages(page).nth(1).get_by_test_id("stAlert")).to_have_count(0)
