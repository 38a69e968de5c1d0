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
    Listener,
    aimed,
    ask,
    assert_inert,
    assert_no_traceback,
    foreign,
    logged_in,
    messages,
    open_chat,
    settle,
    sidebar,
    start_app,
    unsafe_nodes,
    warm_up,
)
from tests.test_render import payloads

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
    expect(answer.get_by_test_id("stCaptionContainer")).to_contain_text("model · gpt-4o-mini ·")  # the flow's name


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
    expect(answer.get_by_test_id("stAlert")).to_contain_text("could not answer this time")  # alice is an analyst
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    assert WORDS[-1] not in answer.inner_text()
    assert_no_traceback(page)

    page.reload()
    expect(messages(page)).to_have_count(2)
    expect(messages(page).first.get_by_test_id("stMarkdownContainer").first).to_have_text(question)
    expect(messages(page).nth(1).get_by_test_id("stAlert")).to_contain_text("your question is saved")
    assert stored_errors(langflow_app)[-1].find("peer closed connection") >= 0  # Langflow's own words, kept
    assert_no_traceback(page)

    model_stub.configure(cut_after=None, token_delay=0.0)
    settle(page)  # the reload logs in again by cookie, and that rerun can swallow a click
    page.get_by_role("button", name="Retry").click()
    expect(messages(page).last).to_contain_text(" ".join(WORDS))
    expect(messages(page)).to_have_count(2)  # the failed answer is replaced, and kept as version 1
    expect(messages(page).last.get_by_text("2 / 2")).to_be_visible()
    expect(messages(page).last.get_by_test_id("stFeedback")).to_be_visible()
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    assert "Traceback" not in langflow_app.log_path.read_text()


def stored_errors(server: AppServer) -> list[str]:
    with sqlite3.connect(server.env["DATABASE_URL"].removeprefix("sqlite:///")) as db:
        return [row[0] or "" for row in db.execute("SELECT error FROM messages WHERE role = 'assistant' ORDER BY id")]


def stored_answers(server: AppServer) -> list[tuple[str, str]]:
    """(status, content) of every answer in the app's SQLite database, oldest first."""
    with sqlite3.connect(server.env["DATABASE_URL"].removeprefix("sqlite:///")) as db:
        return db.execute("SELECT status, content FROM messages WHERE role = 'assistant' ORDER BY id").fetchall()


def test_the_first_question_after_login_is_answered_in_full(browser: Browser, langflow_app: AppServer, model_stub):
    """Issue #14: the first question of a new conversation was cut off after one token and saved
    as interrupted, because a rerun the user never asked for ended the stream."""
    model_stub.configure(answer=" ".join(WORDS), token_delay=0.02)
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


def ask_and_stop(page: Page, model_stub, question: str):
    """Ask a slow streaming flow and press Stop once the second word shows; the answer's bubble."""
    model_stub.configure(answer=" ".join(WORDS), token_delay=0.3)
    box = page.get_by_placeholder(QUESTION_BOX)
    box.fill(question)
    box.press("Enter")
    answer = messages(page).nth(1)
    expect(answer).to_contain_text(WORDS[1], timeout=60_000)
    answer.get_by_role("button", name="Stop").click()
    expect(answer).to_contain_text("You stopped this answer.")
    return answer


def test_stop_keeps_the_partial_answer_as_stopped_and_cancels_the_run(page: Page, langflow_app: AppServer, model_stub):
    """Issue #14: Stop under a streaming answer ends it, saves what had arrived, and Langflow's run ends."""
    answer = ask_and_stop(page, model_stub, "Count to thirty, very slowly.")
    shown = answer.inner_text()
    assert WORDS[-1] not in shown
    [(status, content)] = stored_answers(langflow_app)[-1:]
    assert status == "stopped" and content.startswith("word01") and WORDS[-1] not in content
    deadline = time.monotonic() + 15
    while model_stub.closed_early == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert model_stub.closed_early == 1, "Langflow kept running the flow after Stop"

    page.reload()
    expect(messages(page).nth(1)).to_contain_text("You stopped this answer.")
    expect(page.get_by_role("button", name="Regenerate")).to_be_visible()
    assert_no_traceback(page)


def test_regenerate_and_edit_keep_every_version_and_copy_gives_the_source(
    page: Page, langflow_app: AppServer, model_stub
):
    """Issue #14, as an analyst: a stopped answer regenerated shows 2 / 2 and pages back to the
    stopped version; an edited question gets a new answer with the old turn kept; Copy copies."""
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    answer = ask_and_stop(page, model_stub, "Count to thirty, then again.")

    model_stub.configure(answer="**Regenerated** in full.", token_delay=0.01)
    page.get_by_role("button", name="Regenerate").click()
    expect(answer.get_by_text("2 / 2")).to_be_visible(timeout=60_000)
    expect(answer).to_contain_text("Regenerated in full.")
    expect(answer).not_to_contain_text("You stopped this answer.")
    answer.get_by_role("button", name="‹").click()
    expect(answer.get_by_text("1 / 2")).to_be_visible()
    expect(answer).to_contain_text("You stopped this answer.")
    answer.get_by_role("button", name="›").click()
    expect(answer.get_by_text("2 / 2")).to_be_visible()
    settle(page)  # under load the paging rerun's stale Copy button can linger beside the new one

    answer.get_by_role("button", name="Copy").click()
    page.get_by_test_id("stPopoverBody").get_by_test_id("stCode").hover()  # its copy button shows on hover
    page.get_by_test_id("stPopoverBody").get_by_role("button", name="Copy to clipboard").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == "**Regenerated** in full."
    page.keyboard.press("Escape")

    model_stub.configure(answer="An answer to the edit.", token_delay=0.01)
    messages(page).nth(0).get_by_role("button", name="Edit").click()
    page.get_by_label("Edit your question").fill("Count to three instead.")
    page.get_by_role("button", name="Save and send").click()
    expect(messages(page).nth(1).get_by_text("3 / 3")).to_be_visible(timeout=60_000)
    expect(messages(page).nth(0)).to_contain_text("Count to three instead.")
    expect(messages(page).nth(1)).to_contain_text("An answer to the edit.")
    messages(page).nth(1).get_by_role("button", name="‹").click()
    expect(messages(page).nth(0)).to_contain_text("Count to thirty, then again.")
    expect(messages(page)).to_have_count(2)  # versions page in place; no bubble is repeated
    assert stored_versions(langflow_app)[-3:] == [
        ("stopped", 1, 0), ("complete", 2, 0), ("complete", 3, 1)]
    assert_no_traceback(page)


def stored_versions(server: AppServer) -> list[tuple[str, int, int]]:
    """(status, version, current) of every answer, oldest first."""
    with sqlite3.connect(server.env["DATABASE_URL"].removeprefix("sqlite:///")) as db:
        return db.execute("SELECT status, version, current FROM messages WHERE role = 'assistant' ORDER BY id").fetchall()


def test_an_answer_streaming_while_the_user_clicks_elsewhere_is_kept_whole(page: Page, langflow_app: AppServer, model_stub):
    """A rerun in the middle of an answer (here: opening History and coming back) no longer ends it."""
    model_stub.configure(answer=" ".join(WORDS), token_delay=0.1)
    box = page.get_by_placeholder(QUESTION_BOX)
    box.fill("Count to thirty while I look around.")
    box.press("Enter")
    expect(messages(page).nth(1)).to_contain_text(WORDS[1], timeout=60_000)
    sidebar(page).get_by_role("link", name="History").click()
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    sidebar(page).get_by_role("link", name="Chat").click()
    expect(messages(page).nth(1)).to_contain_text(WORDS[-1], timeout=30_000)
    expect(messages(page).nth(1).get_by_test_id("stFeedback")).to_be_visible()
    assert stored_answers(langflow_app)[-1] == ("complete", " ".join(WORDS))


@pytest.fixture(scope="module")
def two_output_app(langflow, tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[AppServer]:
    settings = {"LANGFLOW_URL": langflow.base_url, "LANGFLOW_FLOW_ID": langflow.two_output_flow,
                "LANGFLOW_API_KEY": langflow.api_key}
    server = start_app(tmp_path_factory.mktemp("two-output-app"), extra_env=settings, users=("alice",))
    warm_up(browser, server)
    yield server
    server.stop()


def test_both_outputs_of_a_two_output_flow_are_shown_apart_and_saved(
    browser: Browser, two_output_app: AppServer, model_stub
):
    """Issue #13: the second output was lost and, while streaming, mixed into the first."""
    from tests.langflow_server import FIRST_MODEL, SECOND_MODEL

    model_stub.configure(answers={FIRST_MODEL: "Alpha beta gamma delta", SECOND_MODEL: "One two three four five"},
                         token_delay=0.1)
    with logged_in(browser, two_output_app, "alice") as page:
        answer = ask(page, "Summarise and detail.", placeholder=QUESTION_BOX)
        blocks = answer.locator('[class*="st-key-output_"]')  # ui.message_body: one bordered block each
        expect(blocks).to_have_count(2)
        expect(blocks.filter(has_text="Summary")).to_contain_text("Alpha beta gamma delta")
        expect(blocks.filter(has_text="Details")).to_contain_text("One two three four five")
        assert "StubSecond" not in answer.inner_text()
        [(status, content)] = stored_answers(two_output_app)
        assert status == "complete"
        assert content == "**Summary**\n\nAlpha beta gamma delta\n\n**Details**\n\nOne two three four five"


def test_model_output_full_of_payloads_streams_and_saves_as_text_and_fetches_nothing(
    page: Page, langflow_app: AppServer, model_stub, listener: Listener
):
    """Issue #18: the payload lists as a model's streamed answer through the real Langflow."""
    seen: list[str] = []
    page.context.on("request", lambda request: seen.append(request.url))
    model_stub.configure(answer=aimed("\n\n".join(payloads("markdown.txt")), listener), token_delay=0.005)
    answer = ask(page, "Show me every payload.", placeholder=QUESTION_BOX)
    expect(answer).to_contain_text("[image: status]")
    assert_inert(page)
    expect(answer.locator("img")).to_have_count(0)
    assert listener.hits == []
    assert foreign(seen, langflow_app) == []
