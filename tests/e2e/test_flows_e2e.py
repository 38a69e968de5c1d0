"""Issue #13 in Chromium: a catalog of real Langflow 1.13 flows, Langflow's own starter projects
among them, asked through the app: agent steps, several outputs, a file, the flow's version."""

from __future__ import annotations

import csv
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import (
    AppServer,
    ask,
    assert_no_traceback,
    download,
    logged_in,
    messages,
    open_chat,
    open_history,
    screenshot,
    settle,
    start_app,
    warm_up,
)
from tests.langflow_server import FlowBuilder, versioned_flow

pytestmark = pytest.mark.e2e

LAUNCH_NOTES = "The launch code is PINEAPPLE-42.\nThe meeting moved to Thursday.\n"
# label in the app's catalog -> a Langflow starter project, unchanged but for its model's address
STARTERS = {"Basic Prompting": "Basic Prompting", "Memory Chatbot": "Memory Chatbot",
            "Simple Agent": "Simple Agent", "Sentiment": "Text Sentiment Analysis", "Multi Agent": "Multi Agent Flow"}


@pytest.fixture(scope="module")
def catalog(langflow) -> dict[str, str]:
    """label -> flow id: the test flows and the starter projects."""
    builder = FlowBuilder(langflow.base_url, langflow.api_key)
    knowledge = builder.knowledge_base(f"launch_{uuid.uuid4().hex[:8]}", {"launch.txt": LAUNCH_NOTES})
    flows = {
        "Calculator agent": langflow.agent_flow,
        "Document reader": langflow.file_flow,
        "Versioned": versioned_flow(builder),  # a copy of its own: its version is what the test reads
        "Two outputs": langflow.two_output_flow,
        "Document Q&A": langflow.starter_flow("Document Q&A", {"Knowledge": {"knowledge_base": knowledge}}),
    }
    return flows | {label: langflow.starter_flow(name) for label, name in STARTERS.items()}


@pytest.fixture(scope="module")
def flows_app(langflow, catalog, tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[AppServer]:
    """The app with the whole catalog to pick from; users alice (analyst) and root (admin)."""
    settings = {
        "LANGFLOW_URL": langflow.base_url,
        "LANGFLOW_API_KEY": langflow.api_key,
        "LANGFLOW_FLOWS": json.dumps([{"flow": flow, "label": label} for label, flow in catalog.items()]),
    }
    server = start_app(tmp_path_factory.mktemp("flows-app"), extra_env=settings, users=("alice", "root"))
    warm_up(browser, server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def alice(browser: Browser, flows_app: AppServer) -> Iterator[Page]:
    with logged_in(browser, flows_app, "alice") as page:
        yield page


@pytest.fixture
def page(alice: Page) -> Page:
    open_chat(alice)
    return alice


def pick(page: Page, label: str) -> None:
    """Pick the flow of a new chat in the picker."""
    page.get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name=label, exact=True).click()
    expect(page.get_by_text(f"Answering with the Langflow flow {label}")).to_be_visible()
    settle(page)


def attach(page: Page, path: Path) -> None:
    page.locator("[data-testid=stChatInput] input[type=file]").set_input_files(str(path))
    expect(page.get_by_test_id("stChatInput").get_by_text(path.name)).to_be_visible()


def stored(server: AppServer, sql: str) -> list[tuple]:
    with sqlite3.connect(server.env["DATABASE_URL"].removeprefix("sqlite:///")) as db:
        return db.execute(sql).fetchall()


def test_an_agent_shows_the_step_it_runs_then_its_steps_under_the_answer(page: Page, flows_app, model_stub):
    model_stub.configure(tool_call=("evaluate_expression", {"expression": "12*7+3"}), token_delay=0.3,
                         tool_answer="The calculator says {tool_output}.")
    pick(page, "Calculator agent")
    box = page.get_by_placeholder("Ask a question")
    box.fill("What is 12*7+3?")
    box.press("Enter")
    answer = messages(page).nth(1)
    expect(answer.get_by_text("1 step so far")).to_be_visible(timeout=60_000)  # live, before the text is done
    expect(answer.get_by_test_id("stFeedback")).to_be_visible(timeout=60_000)
    expect(answer).to_contain_text('The calculator says {"result": "87"}.')
    answer.get_by_text("1 step", exact=True).click()
    expect(answer.get_by_text("evaluate_expression")).to_be_visible()
    expect(answer.get_by_test_id("stCode").last).to_contain_text('{"result": "87"}')
    expect(answer.get_by_text("agent · gpt-4o-mini ·")).to_be_visible()
    screenshot(page, "agent", top=page.get_by_role("heading", name="What is 12*7+3?"))
    [(steps, model)] = stored(flows_app, "SELECT steps, model FROM messages WHERE role = 'assistant' ORDER BY id DESC LIMIT 1")
    assert '"name": "evaluate_expression"' in steps and model == "gpt-4o-mini"
    assert_no_traceback(page)


def test_a_file_attached_to_a_file_reading_flow_is_answered_from_the_file(page: Page, flows_app, model_stub, tmp_path):
    notes = tmp_path / "launch-notes.txt"
    notes.write_text(LAUNCH_NOTES)
    pick(page, "Document reader")
    attach(page, notes)
    answer = ask(page, "What is the launch code?", placeholder="Ask a question")
    expect(answer).to_contain_text("The launch code is PINEAPPLE-42.")  # the stub echoes the prompt
    expect(messages(page).nth(0)).to_contain_text(f"Attached: launch-notes.txt ({len(LAUNCH_NOTES)} B)")
    [(files,)] = stored(flows_app, "SELECT files FROM messages WHERE role = 'user' ORDER BY id DESC LIMIT 1")
    assert '"name": "launch-notes.txt"' in files and f'"size": {len(LAUNCH_NOTES)}' in files
    assert_no_traceback(page)


def test_the_caption_names_the_flow_and_the_version_that_answered(page: Page, flows_app, model_stub):
    pick(page, "Versioned")
    answer = ask(page, "hello", placeholder="Ask a question")
    expect(answer).to_contain_text("Version 2 says: hello")
    [(name, version, model)] = stored(flows_app, "SELECT flow_name, flow_version, model FROM messages ORDER BY id DESC LIMIT 1")
    assert (name.startswith("versioned"), version, model) == (True, "v2", None)  # no model in this flow
    expect(answer.get_by_text(f"{name} v2 ·")).to_be_visible()


@pytest.mark.parametrize("label", ["Basic Prompting", "Memory Chatbot", "Simple Agent"])
def test_langflows_starter_projects_answer_through_the_app(page: Page, flows_app, model_stub, label):
    pick(page, label)
    answer = ask(page, "Hello there", placeholder="Ask a question")
    expect(answer).to_contain_text("You said: Hello there")
    expect(answer.get_by_text("gpt-4o-mini")).to_be_visible()
    assert_no_traceback(page)


def test_the_document_qa_starter_answers_from_its_knowledge_base(page: Page, flows_app, model_stub):
    pick(page, "Document Q&A")
    answer = ask(page, "What is the launch code?", placeholder="Ask a question")
    expect(answer).to_contain_text("PINEAPPLE-42")


def test_the_sentiment_starter_reads_a_file_and_shows_both_of_its_outputs(page: Page, flows_app, model_stub, tmp_path):
    review = tmp_path / "review.txt"
    review.write_text("The new dashboard is fast and clear. Exports work.\n")
    pick(page, "Sentiment")
    attach(page, review)
    answer = ask(page, "How do readers feel?", placeholder="Ask a question")
    blocks = answer.locator("[class*='st-key-output_']")
    expect(blocks).to_have_count(2)
    expect(answer).to_contain_text("The new dashboard is fast and clear.")
    assert_no_traceback(page)


def test_a_chain_of_agents_says_which_one_works_before_its_first_word(page: Page, flows_app, model_stub):
    model_stub.configure(token_delay=0.4)  # each of the three agents takes a few seconds
    pick(page, "Multi Agent")
    box = page.get_by_placeholder("Ask a question")
    box.fill("Plan a trip")
    box.press("Enter")
    answer = messages(page).nth(1)
    expect(answer.get_by_text("Running Agent… (step 2)")).to_be_visible(timeout=60_000)
    expect(answer.get_by_test_id("stFeedback")).to_be_visible(timeout=60_000)
    expect(answer).to_contain_text("You said: You said: You said: Plan a trip")


def test_the_csv_export_says_what_answered_with_the_agents_steps_and_the_files(alice: Page, flows_app, tmp_path):
    """After the tests above: every answer's flow, version and model, and its steps, are in the export."""
    open_history(alice)
    with download(alice, "CSV", tmp_path).open(encoding="utf-8-sig", newline="") as exported:
        rows = list(csv.DictReader(exported))
    answers = [r for r in rows if r["role"] == "assistant"]
    versioned = next(r for r in answers if r["content"] == "Version 2 says: hello")
    assert (versioned["flow_name"].startswith("versioned"), versioned["flow_version"]) == (True, "v2")
    agent = next(r for r in answers if r["content"].startswith("The calculator says"))
    steps = json.loads(agent["steps"])
    assert (agent["flow_name"], agent["model"], [s["name"] for s in steps]) == (
        "agent", "gpt-4o-mini", ["evaluate_expression"])
    assert '"87"' in steps[0]["output"]
    attached = next(r for r in rows if r["role"] == "user" and r["files"])
    assert json.loads(attached["files"])[0]["name"] in ("launch-notes.txt", "review.txt")
