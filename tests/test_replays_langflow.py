"""Issue #17 on a real Langflow 1.13: replays asked by the real ReplayWorker, against real flows.

The originals are asked the way the chat page asks them (``chat.ask`` and its Turn), through a
real ``Route`` (the Langflow client and the flow directory that reads the running version); the
replay is made from the history filters and run to the end by ``ReplayWorker.run_until_idle``.
Each test runs on SQLite and on PostgreSQL (the ``db`` fixture).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from chatbot import chat
from chatbot.config import setting_names
from chatbot.errors import EngineError
from chatbot.flows import FlowDirectory, Route
from chatbot.history import views
from chatbot.history.filters import HistoryFilter
from chatbot.langflow import LangflowClient
from chatbot.models import Conversation, Message
from chatbot.replays import jobs
from chatbot.replays.worker import ReplayWorker
from chatbot.store import Actor
from tests.langflow_server import FAILING_MESSAGE, VERSION_ANSWERS, LangflowServer, versioned_flow

pytestmark = pytest.mark.langflow

MAX_CHARS = 4_000
REPO = Path(__file__).resolve().parents[1]


def router(langflow: LangflowServer) -> Callable[[str], Route]:
    """``route_for`` as the app builds it (chatbot.resources.route), without Streamlit: a client
    for the catalog flow, and one directory shared by every question."""
    http = requests.Session()

    def client(key: str) -> LangflowClient:
        return LangflowClient(base_url=langflow.base_url, flow_id=key, api_key=langflow.api_key, http=http)

    directory = FlowDirectory(client)
    return lambda key: Route(client(key), key, directory, tweaks={})


def asked(db, actor: Actor, route: Route, questions: list[str]) -> int:
    """One conversation, its questions asked in turn as the chat page asks them; its id."""
    conversation_id = None
    for question in questions:
        turn = chat.ask(db, actor, conversation_id, question, route, max_chars=MAX_CHARS)
        "".join(turn.chunks())
        assert turn.status == "complete", (question, turn.status, turn.error)
        conversation_id = turn.conversation_id
    return conversation_id


def rows(db, model) -> list[tuple]:
    """Every row of a table, every column, in id order: to show that a replay changed nothing."""
    columns = list(model.__table__.columns)
    with db.begin() as session:
        return [tuple(row) for row in session.execute(select(*columns).order_by(model.id))]


def rows_of(db, model) -> list:
    """Every row of a table as objects, in id order."""
    with db.begin() as session:
        return list(session.scalars(select(model).order_by(model.id)))


def replay(db, actor: Actor, route_for, search: str, *, flow: str, label: str, mode: str = "context",
           concurrency: int = 2) -> list:
    """Make a replay of the conversations the search finds, run it to the end, return its items."""
    with db.begin() as session:
        questions = jobs.questions_from_filters(session, actor, HistoryFilter(search=search), limit=100)
        made = jobs.create_replay(session, actor, questions, flow=flow, flow_label=label, source="test",
                                  mode=mode)
        replay_id = made.id
    ReplayWorker(db, route_for, concurrency=concurrency).run_until_idle()
    with db.begin() as session:
        progress = jobs.progress(session, actor, replay_id)
        items = jobs.items(session, actor, replay_id)
    assert (progress.status, progress.done, progress.total) == ("done", len(items), len(items))
    return items


def langflow_messages(langflow: LangflowServer, session_id: str) -> list[tuple[str, str]]:
    """(sender, text) of what Langflow keeps in a session's chat memory, oldest first."""
    response = requests.get(f"{langflow.base_url}/api/v1/monitor/messages", params={"session_id": session_id},
                            headers={"x-api-key": langflow.api_key}, timeout=30)
    response.raise_for_status()
    return [(message["sender"], message["text"]) for message in response.json()]


def test_a_replay_against_version_2_answers_as_version_2_and_leaves_the_originals_alone(
        langflow, db, users):
    builder = langflow.builder()
    flow_id = versioned_flow(builder)  # its own copy: the test moves it between versions
    [v2, v1] = builder.versions(flow_id)["entries"]
    name = builder.get_flow(flow_id)["name"]  # "versioned (2)" when the session made others before
    builder.activate(flow_id, v1["id"], save_draft=False)  # version 1 answers the originals
    route_for, tag = router(langflow), f"vq{uuid.uuid4().hex[:8]}"
    alice = users["alice"]
    conversations = [[f"Which region grew fastest? {tag}"],
                     [f"Why did churn rise in March? {tag}", f"And in April? {tag}"],
                     [f"Who owns the billing dashboard? {tag}"]]
    for questions in conversations:
        asked(db, alice, route_for(flow_id), questions)
    originals = {m.content: m for m in rows_of(db, Message) if m.role == "assistant"}
    assert {m.flow_version for m in originals.values()} == {"v1"}
    messages_before, conversations_before = rows(db, Message), rows(db, Conversation)

    builder.activate(flow_id, v2["id"], save_draft=False)  # the flow changes to version 2
    items = replay(db, alice, route_for, tag, flow=flow_id, label="Versioned")

    newest_first = [question for turns in reversed(conversations) for question in turns]
    assert [item.question for item in items] == newest_first  # the history table's order, then the turns'
    for item in items:
        assert item.status == "complete", (item.question, item.error)
        assert item.original_answer == VERSION_ANSWERS[1].format(question=item.question)
        assert item.answer == VERSION_ANSWERS[2].format(question=item.question)
        assert item.answer != item.original_answer
        assert (item.flow_name, item.flow_version) == (name, "v2")
        assert item.original_flow == f"{name} v1"
        assert item.attempts == 1 and item.latency_ms is not None and item.session_id
    assert rows(db, Message) == messages_before  # the originals untouched, to the last column
    assert rows(db, Conversation) == conversations_before


def test_context_mode_asks_the_earlier_turns_first_in_a_fresh_session_per_question(
        langflow, model_stub, db, users):
    """The model flow keeps a Message History: the stub sees what Langflow remembers of the session."""
    route_for, tag = router(langflow), f"cq{uuid.uuid4().hex[:8]}"
    alice = users["alice"]
    turns = [f"First, the churn numbers {tag}", f"Second, split by region {tag}", f"Third, only EMEA {tag}"]
    conversation_id = asked(db, alice, route_for(langflow.model_flow), turns)
    with db.begin() as session:
        original_session = session.get(Conversation, conversation_id).langflow_session_id
    model_stub.requests.clear()

    items = replay(db, alice, route_for, tag, flow=langflow.model_flow, label="Model", concurrency=1)

    assert [item.question for item in items] == turns
    assert [[turn["content"] for turn in item.context or [] if turn["role"] == "user"] for item in items] == [
        [], turns[:1], turns[:2]]
    sessions = [item.session_id for item in items]
    assert len(set(sessions)) == 3 and original_session not in sessions
    for item, session_id in zip(items, sessions, strict=True):
        assert item.status == "complete", item.error
        assert item.answer == f"You said: {item.question}"
        assert (item.model, item.flow_name) == ("gpt-4o-mini", "model")  # what answered, as chat.Turn saves it
        assert item.ttft_ms is not None and item.latency_ms >= item.ttft_ms
        # Counted, but not always equal to the original's: Langflow runs Chat Input and Message
        # History side by side, so the question itself is in the history sent to the model or not.
        assert item.tokens and item.tokens > 0
        asked_there = [text for sender, text in langflow_messages(langflow, session_id) if sender == "User"]
        position = turns.index(item.question)
        assert asked_there == turns[: position + 1]  # the earlier turns, then the question, nothing else
    # What the model saw: each question with the history of its own replayed session only.
    replayed = [r for r in model_stub.requests if r["messages"][-1]["content"] in turns]
    for request in replayed:
        last = request["messages"][-1]["content"]
        system = " ".join(str(m["content"]) for m in request["messages"] if m["role"] == "system")
        earlier, later = turns[: turns.index(last)], turns[turns.index(last) + 1:]
        assert all(question in system for question in earlier), (last, system)
        assert not any(question in system for question in later), (last, system)
    # one model call per question asked: 1 + 2 + 3
    assert sorted(r["messages"][-1]["content"] for r in replayed) == sorted(
        turns[:1] + turns[:2] + turns[:3])


def test_a_failing_flow_makes_error_items_with_the_message_people_read(langflow, db, users):
    route_for, tag = router(langflow), f"fq{uuid.uuid4().hex[:8]}"
    alice = users["alice"]
    for question in (f"What is our NPS? {tag}", f"What is our CSAT? {tag}"):
        asked(db, alice, route_for(langflow.echo_flow), [question])
    messages_before = rows(db, Message)
    with pytest.raises(EngineError) as failure:  # what the chat page would show for this flow
        list(route_for(langflow.failing_flow).backend.stream("hi", session_id=str(uuid.uuid4())))

    # One at a time: two failing runs at once can trip the test server's own SQLite ("database is
    # locked" while Langflow records the failed job), which fails the run with that message instead.
    items = replay(db, alice, route_for, tag, flow=langflow.failing_flow, label="Failing", concurrency=1)

    assert len(items) == 2
    for item in items:
        assert (item.status, item.answer or "") == ("error", "")
        assert item.error == str(failure.value)
        assert FAILING_MESSAGE in item.error
        assert item.original_status == "complete" and item.original_answer == item.question
    with db.begin() as session:
        progress = jobs.progress(session, alice, items[0].replay_id)
    assert (progress.errors, progress.complete) == (2, 0)
    assert rows(db, Message) == messages_before


def test_the_command_line_replays_a_saved_view_against_the_real_server(
        langflow, database_url, db, users, tmp_path):
    """``python -m chatbot replay --view --flow --user`` as an operator runs it under a scheduler:
    its own process, the settings from the environment, the flow by its catalog label."""
    builder = langflow.builder()
    flow_id = versioned_flow(builder)
    [v2, v1] = builder.versions(flow_id)["entries"]
    builder.activate(flow_id, v1["id"], save_draft=False)
    route_for, tag = router(langflow), f"lq{uuid.uuid4().hex[:8]}"
    alice = users["alice"]
    questions = [f"How many tickets closed today? {tag}", f"Which team closed the most? {tag}"]
    for question in questions:
        asked(db, alice, route_for(flow_id), [question])
    with db.begin() as session:
        views.save_view(session, alice, "Closed tickets", HistoryFilter(search=tag))
    messages_before = rows(db, Message)
    builder.activate(flow_id, v2["id"], save_draft=False)
    env = {key: value for key, value in os.environ.items() if key not in setting_names()}
    env.update(DATABASE_URL=database_url, LANGFLOW_URL=langflow.base_url, LANGFLOW_API_KEY=langflow.api_key,
               LANGFLOW_FLOWS=json.dumps([{"flow": flow_id, "label": "Versioned"}]), REPLAY_CONCURRENCY="1",
               PYTHONPATH=str(REPO))

    result = subprocess.run(
        [sys.executable, "-m", "chatbot", "replay", "--view", "Closed tickets", "--flow", "Versioned",
         "--user", "alice"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr
    assert "done: 2 complete, 0 failed, 0 cancelled, of 2" in result.stdout, result.stdout
    with db.begin() as session:
        [summary] = jobs.list_replays(session, alice)
        items = jobs.items(session, alice, summary.id)
    assert (summary.flow_label, summary.status, summary.total) == ("Versioned", "done", 2)
    assert {item.question: item.answer for item in items} == {
        question: VERSION_ANSWERS[2].format(question=question) for question in questions}
    assert {(item.flow_version, item.original_flow.rsplit(" ", 1)[-1], item.attempts) for item in items} == {
        ("v2", "v1", 1)}
    assert rows(db, Message) == messages_before
