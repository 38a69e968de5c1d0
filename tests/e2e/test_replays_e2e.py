"""Issue #17's "Checked by", in Chromium against the real app and a real Langflow 1.13.

Two flows in the catalog: "Flow A" (the echo flow) answers ten questions of alice's; she saves a
view of exactly those ten in /history, replays it against "Flow B" (an OpenAI model behind the
stub, slowed down so that the replay takes a while), watches the progress bar, and the app is
restarted mid-replay on the same database and port (stopped as a rollout stops it, or killed as a
crash does): the page reconnects, the replay resumes and ends with exactly ten rows, each question
asked once (the one cut off by the restart excepted). She marks verdicts, filters the rows, and
downloads the comparison as CSV and Excel.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import requests
from playwright.sync_api import Browser, Locator, Page, expect
from playwright.sync_api import Error as PlaywrightError

from chatbot import chat, store
from chatbot import db as database
from chatbot.flows import FlowDirectory, Route
from chatbot.langflow import LangflowClient
from chatbot.store import Actor
from tests.e2e.conftest import (
    UI_TIMEOUT_MS,
    AppServer,
    ask,
    assert_no_traceback,
    logged_in,
    new_chat,
    open_chat,
    open_history,
    screenshot,
    search_history,
    settle,
    sidebar,
    start_app,
    wait_for_login_cookie,
    warm_up,
)
from tests.langflow_server import FlowBuilder, LangflowServer, edge, openai_node

pytestmark = pytest.mark.e2e

FLOW_B_MODEL = "flow-b-model"  # the stub's requests for flow B are told apart by it
TOKEN_DELAY = 0.5  # seconds per word of flow B's answer: about 5 s a question, 50 s for ten
REPLAY_TIMEOUT_MS = 240_000  # ten slow questions, a restart, and a stale claim to wait out (30 s)
QUESTIONS = [
    "Which region grew fastest last quarter?",
    "Why did churn rise in March?",
    "Who owns the billing dashboard?",
    "How many seats did EMEA add?",
    "What is the median deal size?",
    "When does the pricing change ship?",
    "Which accounts paused their plan?",
    "How long is the average sales cycle?",
    "What is our net revenue retention?",
    "Which feature drives the most upgrades?",
]
# How the app goes down mid-replay: a rollout's SIGTERM (Streamlit shuts down), or a crash's SIGKILL.
RESTARTS = {"rollout": False, "crash": True}  # -> AppServer.restart(kill=...)


def slow_model_flow(builder: FlowBuilder, openai_base: str) -> dict:
    """Chat Input -> OpenAI (``FLOW_B_MODEL`` on the stub, streaming) -> Chat Output: answers
    "You said: <question>", as slowly as the stub's ``token_delay`` makes it."""
    chat_in, chat_out = builder.node("ChatInput"), builder.node("ChatOutput")
    llm = openai_node(builder, openai_base, api_key="sk-stub", model=FLOW_B_MODEL)
    edges = [edge(chat_in, "message", llm, "input_value"), edge(llm, "text_output", chat_out, "input_value")]
    return builder.flow("flow B", [chat_in, llm, chat_out], edges)


@pytest.fixture(scope="module")
def catalog(langflow: LangflowServer) -> dict[str, str]:
    """label -> flow id: the two flows of the catalog."""
    builder = langflow.builder()
    return {"Flow A": langflow.echo_flow, "Flow B": builder.save(slow_model_flow(builder, langflow.stub.url))}


@pytest.fixture(scope="module")
def replay_app(langflow, catalog, tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[AppServer]:
    """The app with both flows, one question replayed at a time; user alice (analyst)."""
    settings = {
        "LANGFLOW_URL": langflow.base_url,
        "LANGFLOW_API_KEY": langflow.api_key,
        "LANGFLOW_FLOWS": json.dumps([{"flow": flow, "label": label} for label, flow in catalog.items()]),
        "REPLAY_CONCURRENCY": "1",
    }
    server = start_app(tmp_path_factory.mktemp("replay-app"), extra_env=settings, users=("alice",))
    warm_up(browser, server)
    yield server
    server.stop()


def database_path(server: AppServer) -> str:
    return server.env["DATABASE_URL"].removeprefix("sqlite:///")


def stored(server: AppServer, sql: str, *params) -> list[tuple]:
    """Rows read straight from the app's SQLite file (a reader never blocks the app in WAL mode)."""
    with sqlite3.connect(database_path(server)) as db:
        return db.execute(sql, params).fetchall()


def ask_in_the_background(server: AppServer, langflow: LangflowServer, flow: str, questions: list[str]) -> None:
    """Ask questions as alice the way the chat page does (``chat.ask`` and its Turn), one new
    conversation each, on the app's own database: the UI path for all ten would take minutes."""
    engine = database.make_engine(server.env["DATABASE_URL"])
    db = database.session_factory(engine)
    http = requests.Session()

    def client(key: str) -> LangflowClient:
        return LangflowClient(base_url=langflow.base_url, flow_id=key, api_key=langflow.api_key, http=http)

    route = Route(client(flow), flow, FlowDirectory(client), tweaks={})
    try:
        with db.begin() as session:
            alice = Actor.of(store.require_user(session, "alice"))
        for question in questions:
            turn = chat.ask(db, alice, None, question, route, max_chars=4_000)
            "".join(turn.chunks())
            assert turn.status == "complete", (question, turn.error)
    finally:
        engine.dispose()


def items_done(server: AppServer, replay_id: int) -> int:
    [(done,)] = stored(server, "SELECT count(*) FROM replay_items WHERE replay_id = ? "
                               "AND status IN ('complete', 'error', 'cancelled')", replay_id)
    return done


@pytest.fixture
def tag() -> str:
    """A word only these ten questions have, so that a search finds exactly them."""
    return f"rq{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def alice(browser: Browser, replay_app: AppServer) -> Iterator[Page]:
    with logged_in(browser, replay_app, "alice") as page:
        yield page


def progress_done(page: Page) -> int | None:
    """How many questions the progress bar says are done ("Running: 3 of 10 questions"); None when
    no bar shows (the replay has ended, or the page is between runs)."""
    bars = page.get_by_test_id("stProgress")
    try:
        text = bars.first.inner_text(timeout=1_000) if bars.count() else ""
    except PlaywrightError:  # replaced by a rerun meanwhile
        return None
    found = re.search(r"(\d+) of (\d+) questions", text)
    return int(found.group(1)) if found else None


def watch_progress(page: Page, until, what: str, timeout_ms: int = REPLAY_TIMEOUT_MS) -> list[int]:
    """The distinct values the progress bar showed, in order, until ``until()`` holds."""
    seen: list[int] = []
    deadline = time.monotonic() + timeout_ms / 1000
    while not until():
        shown = progress_done(page)
        if shown is not None and (not seen or seen[-1] != shown):
            seen.append(shown)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; the progress bar showed {seen}")
        page.wait_for_timeout(200)
    return seen


def save_view(page: Page, tag: str, name: str) -> None:
    """On /history: search the questions' word, check that exactly ten conversations match, save the view."""
    open_history(page)
    search_history(page, tag)
    expect(page.get_by_text("10 conversations match")).to_be_visible()
    page.get_by_role("button", name="Save this view").click()
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Save", exact=True).click()
    settle(page)
    expect(page).to_have_url(re.compile(r"[?&]view=\d+"))


def choose(page: Page, label: str, option: str | re.Pattern) -> None:
    """Pick an option of the select box labelled ``label``."""
    page.get_by_test_id("stSelectbox").filter(has=page.get_by_text(label, exact=True)).click()
    page.get_by_role("option", name=option).click()
    settle(page)


def replay_row(page: Page, item_id: int) -> Locator:
    return page.locator(f".st-key-replays_row_{item_id}")


def metric(page: Page, label: str) -> Locator:
    return page.get_by_test_id("stMetric").filter(has=page.get_by_test_id("stMetricLabel").get_by_text(
        label, exact=True)).get_by_test_id("stMetricValue")


def download_comparison(page: Page, label: str, folder: Path) -> Path:
    """Open the download menu and save what its ``label`` button sends."""
    button = page.get_by_role("button", name=label, exact=True)
    if not button.is_visible():
        page.get_by_role("button", name="Download the comparison").click()
        expect(button).to_be_visible()
    with page.expect_download(timeout=UI_TIMEOUT_MS * 3) as started:
        button.click()
    target = folder / started.value.suggested_filename
    started.value.save_as(target)
    return target


@pytest.mark.parametrize("restart", list(RESTARTS))
def test_checked_by_replay_a_saved_view_against_another_flow_through_a_restart(
        alice: Page, replay_app: AppServer, langflow, catalog, model_stub, tag, tmp_path, restart):
    page, view, name = alice, f"Ten questions ({restart})", f"Flow A against Flow B ({restart})"
    questions = [f"{question} ({tag})" for question in QUESTIONS]
    open_chat(page)
    for question in questions[:2]:  # the first ones as a person asks them
        new_chat(page)
        expect(ask(page, question, placeholder="Ask a question")).to_contain_text(question)
    ask_in_the_background(replay_app, langflow, catalog["Flow A"], questions[2:])
    answered = stored(replay_app, "SELECT m.content FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                                  "WHERE m.role = 'assistant' AND m.status = 'complete' AND c.title LIKE ?", f"%{tag}%")
    assert sorted(answer for (answer,) in answered) == sorted(questions)  # flow A echoes them
    messages_before = stored(replay_app, "SELECT * FROM messages ORDER BY id")

    save_view(page, tag, view)
    sidebar(page).get_by_role("link", name="Replays").click()
    expect(page.get_by_role("heading", name="Replays")).to_be_visible()
    settle(page)
    choose(page, "Saved view", re.compile(f"^{re.escape(view)}"))
    choose(page, "Ask", "Flow B")
    expect(page.get_by_text("This replay asks 10 questions of Flow B.")).to_be_visible()
    page.get_by_label("Name (optional)").fill(name)
    page.get_by_label("Name (optional)").press("Enter")
    settle(page)
    model_stub.configure(token_delay=TOKEN_DELAY)  # flow B thinks a while over each word
    page.get_by_role("button", name="Start the replay").click()
    expect(page).to_have_url(re.compile(r"[?&]replay=\d+"))
    replay_id = int(re.search(r"[?&]replay=(\d+)", page.url).group(1))
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    wait_for_login_cookie(page)  # the restarted app logs her in again by it

    # The bar moves while the worker runs; the app restarts once three questions are done.
    before = watch_progress(page, lambda: items_done(replay_app, replay_id) >= 3, "three questions done")
    if restart == "rollout":
        screenshot(page, "replay-progress", top=page.get_by_role("heading", name=name))
    done_at_restart = items_done(replay_app, replay_id)
    assert done_at_restart < 10, "the replay ended before the restart: make flow B slower (TOKEN_DELAY)"
    replay_app.restart(kill=RESTARTS[restart])
    after = watch_progress(page, lambda: stored(replay_app, "SELECT status FROM replays WHERE id = ?",
                                                replay_id) == [("done",)], "the replay to end")
    seen = before + after  # the first values after the restart may still be the old page's
    assert len(set(before)) >= 2 and seen == sorted(seen), f"the progress bar showed {before} then {after}"
    assert max(after) > done_at_restart, f"the page never showed progress after the restart: {after}"

    # Exactly ten rows, each asked once (the one the restart cut off may have reached the model twice).
    rows = page.locator("[class*='st-key-replays_row_']")
    expect(rows).to_have_count(10, timeout=UI_TIMEOUT_MS * 2)
    expect(page.get_by_test_id("stProgress")).to_have_count(0)
    items = stored(replay_app, "SELECT id, question, status, answer, flow_name, attempts FROM replay_items "
                               "WHERE replay_id = ? ORDER BY position", replay_id)
    assert sorted(item[1] for item in items) == sorted(questions)
    for _id, question, status, answer, flow_name, _attempts in items:
        assert (status, answer, flow_name) == ("complete", f"You said: {question}", "flow B")
    attempts = {question: tries for _id, question, *_rest, tries in items}
    assert sorted(attempts.values())[:-1] == [1] * 9 and attempts and max(attempts.values()) <= 2, attempts
    calls = [r["messages"][-1]["content"] for r in model_stub.requests if r.get("model") == FLOW_B_MODEL]
    for question, tries in attempts.items():
        assert 1 <= calls.count(question) <= tries, (question, calls.count(question), tries)
    assert stored(replay_app, "SELECT * FROM messages ORDER BY id") == messages_before  # originals untouched

    # Verdicts on four rows; the summary counts them.
    verdicts = {items[0][0]: "Better", items[1][0]: "Better", items[2][0]: "Worse", items[3][0]: "Same"}
    for item_id, verdict in verdicts.items():
        replay_row(page, item_id).get_by_role("radio", name=verdict, exact=True).click()
        settle(page)
    expect(metric(page, "Better")).to_have_text("2")
    expect(metric(page, "Worse")).to_have_text("1")
    expect(metric(page, "Same")).to_have_text("1")
    expect(metric(page, "Unjudged")).to_have_text("6")
    expect(metric(page, "Answers changed")).to_have_text("100%")
    saved = dict(stored(replay_app, "SELECT id, verdict FROM replay_items WHERE replay_id = ? AND verdict IS NOT NULL",
                        replay_id))
    assert saved == {item_id: verdict.lower() for item_id, verdict in verdicts.items()}
    show = page.locator(".st-key-replays_show")
    show.get_by_role("radio", name="Worse", exact=True).click()
    settle(page)
    expect(rows).to_have_count(1)
    expect(replay_row(page, items[2][0])).to_be_visible()
    show.get_by_role("radio", name="All", exact=True).click()
    settle(page)
    expect(rows).to_have_count(10)
    assert_no_traceback(page)

    # The comparison, downloaded and read back: ten rows, both sides, the verdicts.
    expected = {question: (question, f"You said: {question}") for question in questions}
    judged = {question: verdicts[item_id].lower() for item_id, question, *_rest in items if item_id in verdicts}
    for frame in (pd.read_csv(download_comparison(page, "CSV", tmp_path), encoding="utf-8-sig", dtype=str,
                              keep_default_na=False),
                  excel_frame(download_comparison(page, "Excel", tmp_path))):
        assert len(frame) == 10
        assert {q: (o, r) for q, o, r in frame[["question", "original_answer", "replayed_answer"]].to_numpy()} \
            == expected
        marked = {q: v for q, v in frame[["question", "verdict"]].to_numpy() if isinstance(v, str) and v}
        assert marked == judged


def excel_frame(path: Path) -> pd.DataFrame:
    sheet = openpyxl.load_workbook(path).worksheets[0]
    assert [cell.coordinate for row in sheet.iter_rows() for cell in row if cell.data_type == "f"] == []
    header, *body = [[cell.value for cell in row] for row in sheet.iter_rows()]
    return pd.DataFrame(body, columns=header)
